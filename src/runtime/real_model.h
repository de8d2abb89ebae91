// Turns a saved fake-quantized model (weights on the integer grid + their scales) into one that
// runs the integer kernels: every linear with scales gets packed Q4/Q8 weights and a per-token
// activation quantizer matching the recipe; fp32 copies are dropped when asked.
#pragma once
#include <string>

#include "model/model.h"
#include "quant/online_plan.h"
#include "quant/recipe.h"
#include "quant/session.h"

namespace kt {

struct PackReport {
  int packed = 0, skipped = 0;
  size_t packed_bytes = 0, fp32_bytes = 0;
  std::string why_not;  // when nothing could be packed
};

// Real kernels need symmetric per-token activations of 2..8 bits (int8 codes) and symmetric weights
// with scales.
bool recipe_runs_on_kernels(const Recipe& r, std::string* why);
PackReport pack_model_for_kernels(Model& m, const Recipe& r, bool drop_fp32);
// Whether the recipe's K/V quantizers can run inside a quantized K/V cache (2..8 bits, one
// group per head).
bool kv_cache_supported(const Recipe& r, const ModelSpec& s);
// What a packed model (and, with `quantized_kv`, a quantized K/V cache) takes over from the
// hooks: the linears quantize their own inputs when any was packed; the down_proj linears
// rotate by R4 as they quantize when every one runs the integer kernels; the cache quantizes
// K/V and rotates K by R3 per head as it writes. Each fused rotation works on a row in a small
// buffer right before it is quantized (one pass instead of two, same results bit for bit).
OnlineCaps kernel_caps(const Model& m, const PackReport& pack, bool quantized_kv);
// Installs what the plan moved into the model: R4 into every down_proj's activation quantizer
// when plan.r4_in_down_linears(). Returns whether the plan fused anything (R4 there, or R3's K
// half into the cache write, which the plan hands the cache through k_head_transform()).
bool fuse_online_rotations(Model& m, const OnlinePlan& plan);
// Packs nothing itself: compiles `r` for kernel_caps(*m, pack, quantized_kv), fuses the plan
// into `m` and returns the session that runs it.
Session kernel_session(std::shared_ptr<Model> m, const Recipe& r, const PackReport& pack, bool quantized_kv);
// For fake-quant evaluation of a model stored packed: fp32 weights from the packed ones.
void unpack_model(Model& m);

}  // namespace kt
