// Turns a saved fake-quantized model (weights on the integer grid + their scales) into one that
// runs the integer kernels: every linear with scales gets packed Q4/Q8 weights and a per-token
// activation quantizer matching the recipe; fp32 copies are dropped when asked.
#pragma once
#include <string>

#include "model/model.h"
#include "quant/recipe.h"

namespace kt {

struct PackReport {
  int packed = 0, skipped = 0;
  size_t packed_bytes = 0, fp32_bytes = 0;
  std::string why_not;  // when nothing could be packed
};

// Real kernels need symmetric per-token activations of 4 or 8 bits and symmetric weights with scales.
bool recipe_runs_on_kernels(const Recipe& r, std::string* why);
PackReport pack_model_for_kernels(Model& m, const Recipe& r, bool drop_fp32);
// Moves the recipe's online rotations from the hook into the quantizers that consume them, each
// rotating a row in a small buffer right before quantizing it (one pass instead of two, same
// results bit for bit): R4 into the down_proj linears' activation quantizer (when every
// down_proj runs the integer kernels) and R3's K half into the K/V cache write (when the cache
// quantizes K/V; call after setting cache_quantizes_kv). Returns whether anything was fused.
bool fuse_online_rotations(Model& m, RecipeHooks& hooks);
// For fake-quant evaluation of a model stored packed: fp32 weights from the packed ones.
void unpack_model(Model& m);

}  // namespace kt
