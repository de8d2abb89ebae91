// Attention straight from the K/V cache for a few queries per sequence (decode, short
// continuations): each cached row is read once, as stored (int codes dequantized into a
// head_dim buffer that stays in L1, or the fp32 row itself), and used by every query head of
// its GQA group; sequences x kv heads run in parallel. The prefill path (model/forward.cc's
// attend over KVCache::view) dequantizes the whole layer first, which at one query per step
// costs more than the attention itself and grows with the context.
#pragma once

#include "core/spec.h"
#include "model/kv_cache.h"

namespace kt {

// The most queries per sequence attend_cache serves; longer chunks go through sgemm.
constexpr int kAttendCacheMaxTokens = 16;

// Same contract as attend() over cache.view(layer, nseq, qpos0 + ntok): q [nseq*ntok, q_dim] at
// positions qpos0.., keys 0..qpos0+ntok-1 of `layer`, out [nseq*ntok, q_dim]. Uses the kernel
// family active_kernel() names (AVX-512, AVX2 or portable code).
void attend_cache(const ModelSpec& s, const float* q, const KVCache& cache, int layer, int nseq, int ntok, int qpos0,
                  int window, float* out);

// Whether attend_cache, with the kernel family active now, has KDot::Q8 (the AVX-512 VNNI copy
// as GCC builds it; clang's copies have no intrinsics) for 4-bit K and V with heads of 128 or
// 256 dims. Where it does not, a cache asking for Q8 gets F32.
bool attend_cache_has_q8();

}  // namespace kt
