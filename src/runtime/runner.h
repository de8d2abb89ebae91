// Loading a model for real execution: a quantized model directory is packed for the integer
// kernels and gets its online transforms and a quantized KV cache; an FP model runs as is.
#pragma once
#include <memory>
#include <string>

#include "quant/recipe.h"
#include "runtime/real_model.h"

namespace kt {

struct RealModel {
  std::unique_ptr<Model> model;
  std::unique_ptr<RecipeHooks> hooks;  // null for FP models
  Recipe recipe;
  PackReport pack;
  QuantSpec kv_k, kv_v;  // enabled: quantized KV cache
  std::string describe() const;
};

// From a directory with recipe.json (packs it) or any FP model.
RealModel load_real(const std::string& path);
// Builds a real model in memory: `method` transforms + RTN weights at the given bits, packed.
RealModel make_real(const std::string& path, const std::string& method, int wbits, int abits, int kvbits);
// Attaches kernels/KV cache to an already quantized model with its recipe (scales recorded).
void attach_real(RealModel& rm);

}  // namespace kt
