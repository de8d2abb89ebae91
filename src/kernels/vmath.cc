// GCC 12 reports the undefined pass-through operands inside its own AVX-512 intrinsics
// (_mm512_maskz_loadu_ps and friends) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "kernels/vmath.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace kt {

namespace {

// exp(x) = 2^n e^r, n = round(x log2 e), r = x - n ln 2 in two steps (ln 2 = kLn2Hi + kLn2Lo,
// kLn2Hi with few enough bits that n * kLn2Hi is exact), e^r by its Taylor polynomial to r^7
// (|r| <= ln 2 / 2: the first term left out is < 6e-9 of the result). The clamp keeps 2^n a
// normal float, so scaling by it is exact.
constexpr float kExpLo = -87.3f, kExpHi = 88.0f;
constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kC[8] = {1.0f, 1.0f, 1.0f / 2, 1.0f / 6, 1.0f / 24, 1.0f / 120, 1.0f / 720, 1.0f / 5040};

float pow2i(int n) {  // 2^n for -126 <= n <= 127
  const uint32_t bits = (uint32_t)(n + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

__attribute__((target("avx512f"))) inline __m512 exp_ps(__m512 x) {
  // max/min return their second operand when either is NaN: a NaN x stays NaN
  x = _mm512_min_ps(_mm512_set1_ps(kExpHi), _mm512_max_ps(_mm512_set1_ps(kExpLo), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Hi), x);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kC[7]);
  for (int k = 6; k >= 0; k--) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC[k]));
  return _mm512_scalef_ps(p, n);
}

// softmax_range's lane sums: element lo + j in lane j % 16, lanes 0-7 in lo8 and 8-15 in hi8
__attribute__((target("avx512f"))) void softmax_range_avx512(float* x, int lo, int hi) {
  const int n = hi - lo + 1;
  float* v = x + lo;
  __m512 mxv = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  int j = 0;
  for (; j + 16 <= n; j += 16) mxv = _mm512_max_ps(_mm512_loadu_ps(v + j), mxv);  // NaN in v: ignored
  const __mmask16 tail = (__mmask16)((1u << (n - j)) - 1);
  if (j < n) mxv = _mm512_mask_max_ps(mxv, tail, _mm512_maskz_loadu_ps(tail, v + j), mxv);
  const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mxv));
  __m512d lo8 = _mm512_setzero_pd(), hi8 = _mm512_setzero_pd();
  for (j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : tail;
    const __m512 e = _mm512_maskz_mov_ps(m, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, v + j), mx)));
    _mm512_mask_storeu_ps(v + j, m, e);
    lo8 = _mm512_add_pd(lo8, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
    hi8 = _mm512_add_pd(hi8, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
  }
  double lanes[16];
  _mm512_storeu_pd(lanes, lo8);
  _mm512_storeu_pd(lanes + 8, hi8);
  double sum = 0;
  for (double l : lanes) sum += l;
  const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
  for (j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : tail;
    _mm512_mask_storeu_ps(v + j, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, v + j), inv));
  }
}

__attribute__((target("avx512f"))) void silu_mul_avx512(float* g, const float* u, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 a = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), a));
    const __m512 y = _mm512_mul_ps(_mm512_div_ps(a, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, u + i));
    _mm512_mask_storeu_ps(g + i, m, y);
  }
}

bool have_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

}  // namespace

float exp_ref(float x) {
  if (x != x) return x;
  x = std::min(std::max(x, kExpLo), kExpHi);
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kC[7];
  for (int k = 6; k >= 0; k--) p = std::fma(p, r, kC[k]);
  return p * pow2i((int)n);
}

void softmax_range_ref(float* x, int lo, int hi) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int j = lo; j <= hi; j++) mx = std::max(mx, x[j]);
  double lanes[16] = {};
  for (int j = lo; j <= hi; j++) {
    x[j] = exp_ref(x[j] - mx);
    lanes[(j - lo) % 16] += x[j];
  }
  double sum = 0;
  for (double l : lanes) sum += l;
  const float inv = (float)(1.0 / sum);
  for (int j = lo; j <= hi; j++) x[j] *= inv;
}

void silu_mul_ref(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + exp_ref(0.0f - g[i])) * u[i];
}

void softmax_range(float* x, int lo, int hi) {
  if (hi < lo) return;
  if (have_avx512()) return softmax_range_avx512(x, lo, hi);
  softmax_range_ref(x, lo, hi);
}

void silu_mul(float* g, const float* u, int64_t n) {
  if (have_avx512()) return silu_mul_avx512(g, u, n);
  silu_mul_ref(g, u, n);
}

void softcap(float* x, int64_t n, float cap) {
#pragma omp parallel for if (n >= 65536)
  for (int64_t i = 0; i < n; i++) x[i] = cap * std::tanh(x[i] / cap);
}

}  // namespace kt
