#pragma GCC diagnostic ignored "-Wpsabi"  // 64-byte vectors passed between static inline functions only
#include "core/mse_clip.h"

#include <cmath>
#include <cstring>
#include <vector>

namespace kt {

#define KT_MSE_NS mse_portable
#include "core/mse_clip_impl.inc"
#undef KT_MSE_NS

#pragma GCC push_options
#pragma GCC target("avx2")
#define KT_MSE_NS mse_avx2
#include "core/mse_clip_impl.inc"
#undef KT_MSE_NS
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl")
#define KT_MSE_NS mse_avx512
#include "core/mse_clip_impl.inc"
#undef KT_MSE_NS
#pragma GCC pop_options

SimdLevel best_simd_level() {
  static const SimdLevel l = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                                     __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
                                 ? SimdLevel::Avx512
                             : __builtin_cpu_supports("avx2") ? SimdLevel::Avx2
                                                              : SimdLevel::Portable;
  return l;
}

QParams mse_clip_search(const float* x, int64_t n, const QuantSpec& s, float lo, float hi, SimdLevel level,
                        double* err) {
  // Padded to whole blocks of 16 with zeros: a zero quantizes to exactly 0 (symmetric, or the
  // zero point when asymmetric, whose range always holds 0), so padding adds nothing.
  const int64_t nb = (n + 15) / 16;
  std::vector<float> xp((size_t)nb * 16, 0.0f);
  std::memcpy(xp.data(), x, (size_t)n * sizeof(float));
  switch (level) {
    case SimdLevel::Avx512: return mse_avx512::search(xp.data(), nb, s, lo, hi, err);
    case SimdLevel::Avx2: return mse_avx2::search(xp.data(), nb, s, lo, hi, err);
    case SimdLevel::Portable: break;
  }
  return mse_portable::search(xp.data(), nb, s, lo, hi, err);
}

QParams mse_clip_search(const float* x, int64_t n, const QuantSpec& s, float lo, float hi) {
  return mse_clip_search(x, n, s, lo, hi, best_simd_level());
}

}  // namespace kt
