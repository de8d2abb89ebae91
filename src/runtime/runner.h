// Loading a model for real execution: a quantized model directory is packed for the integer
// kernels and gets its online plan and a quantized KV cache; an FP model runs as is.
#pragma once
#include <memory>
#include <string>

#include "quant/session.h"
#include "runtime/real_model.h"

namespace kt {

struct RealModel {
  Session session;  // the packed model, its plan (null for FP models) and its K/V cache
  PackReport pack;
  const Model& model() const { return session.model(); }
  std::string describe() const;
};

// From a directory with recipe.json (packs it) or any FP model.
RealModel load_real(const std::string& path);
// Builds a real model in memory: `method` transforms + RTN weights at the given bits, packed.
// lm_head_bits > 0: the head quantized too (Recipe::quant_lm_head), packed for the kernels.
RealModel make_real(const std::string& path, const std::string& method, int wbits, int abits, int kvbits,
                    int lm_head_bits = 0);
// Packs an already quantized model (scales recorded) for the kernels and compiles its recipe
// for what they and the K/V cache take over.
RealModel attach_real(std::unique_ptr<Model> m, const Recipe& r);

}  // namespace kt
