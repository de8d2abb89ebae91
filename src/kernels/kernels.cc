// The scalar and AVX2 integer GEMM kernels. Each computes acc[m, n, g] = sum_{k in g} xq[m,k] * w[n,k] exactly.
// Q4 / Q6 weights are stored as u = w + 8 / w + 32, so the AVX2 kernel accumulates sum u*x and
// subtracts 8 (32) * sum x (the activation group sums); Q8 kernels use x + 128 as the unsigned operand
// (VNNI) or widen to 16 bits (AVX2) and the scalar kernel decodes each step through its type's table row.
// Compiled with per-function target attributes so one binary runs everywhere; the dispatcher
// (runtime/packed.cc) only calls what CPUID reports. The AVX-512 VNNI kernel is in kernels_vnni.cc.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/packed.h"

namespace kt {

// The reference: every step decoded by its type's table row (kernels/wtype.h), so a new type
// runs here as soon as its row exists. Threads split the tiles.
void gemm_acc_scalar(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
  const WTypeTraits& tt = wtype_traits(w.type);
  const int G = w.groups(), K8 = w.Kp / 8;
#pragma omp parallel for if ((int64_t)a.M * w.Np * w.Kp > (1 << 20))
  for (int tile = 0; tile < w.Np / 16; tile++) {
    int8_t codes[kTileN * kStepK];
    for (int m = 0; m < a.M; m++)
      for (int c = 0; c < 16; c++)
        for (int g = 0; g < G; g++) acc[((size_t)m * w.Np + tile * 16 + c) * G + g] = 0;
    for (int k8 = 0; k8 < K8; k8++) {
      tt.unpack_step(&w.data[((size_t)tile * K8 + k8) * tt.step_bytes], codes);
      const int g = k8 * 8 / w.group;
      for (int m = 0; m < a.M; m++) {
        const int8_t* x = &a.q[(size_t)m * a.Kp + k8 * 8];
        for (int c = 0; c < 16; c++) {
          int32_t s = 0;
          for (int j = 0; j < 8; j++) s += codes[c * 8 + j] * x[j];
          acc[((size_t)m * w.Np + tile * 16 + c) * G + g] += s;
        }
      }
    }
  }
}

// Q8: one row of x times one tile of 16 channels, widened to 16 bits (exact s8 x s8; vpmaddubsw
// would saturate on (x + 128) * w). A function of its own because OpenMP outlines the parallel
// loop body into a function without the target attribute (clang rejects vector types there).
__attribute__((target("avx2,fma"))) static void avx2_q8_tile(const QuantizedActs& a, const PackedWeight& w,
                                                             int32_t* acc, int m, int tile) {
  const int G = w.groups(), K8 = w.Kp / 8, gk8 = w.group / 8;
  const int8_t* x = &a.q[(size_t)m * a.Kp];
  for (int g = 0; g < G; g++) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();  // channels 0-7, 8-15
    for (int k8 = g * gk8; k8 < (g + 1) * gk8; k8++) {
      const uint8_t* d = &w.data[((size_t)tile * K8 + k8) * sizeof(Q8Step)];
      int32_t xa, xb;
      std::memcpy(&xa, x + k8 * 8, 4);
      std::memcpy(&xb, x + k8 * 8 + 4, 4);
      const __m256i va = _mm256_set1_epi32(xa), vb = _mm256_set1_epi32(xb);
      for (int h = 0; h < 2; h++) {
        for (int part = 0; part < 2; part++) {
          __m256i wb = _mm256_loadu_si256((const __m256i*)(d + 64 * part + 32 * h));
          __m256i xv = part == 0 ? va : vb;
          __m256i wl = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(wb));
          __m256i wh = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(wb, 1));
          __m256i xl = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv));
          __m256i pl = _mm256_madd_epi16(wl, xl), ph = _mm256_madd_epi16(wh, xl);  // x pattern repeats per lane
          // pl: pairs of channels 4 lanes... reduce pairs to per-channel sums below
          __m256i sum = _mm256_hadd_epi32(pl, ph);  // [c0 c1 c4 c5 | c2 c3 c6 c7] for this half
          sum = _mm256_permute4x64_epi64(sum, 0xd8);  // -> c0 c1 c2 c3 c4 c5 c6 c7
          if (h == 0) s0 = _mm256_add_epi32(s0, sum); else s1 = _mm256_add_epi32(s1, sum);
        }
      }
    }
    int32_t out[16];
    _mm256_storeu_si256((__m256i*)out, s0);
    _mm256_storeu_si256((__m256i*)(out + 8), s1);
    for (int c = 0; c < 16; c++) acc[((size_t)m * w.Np + tile * 16 + c) * G + g] = out[c];
  }
}

// Q4 and Q6: MR rows x one tile of 16 channels, accumulators in registers (2 ymm per row). Each
// unpacked weight vector (u = w + 8 or w + 32, unsigned) feeds MR rows. The low- and
// high-nibble products of one 8-wide K step are added in 16 bits before widening: each
// vpmaddubsw pair sum is within +-2*63*128 = +-16128 and two of them within +-32256, exact in
// int16 for Q6 as for Q4 (+-7680), so one vpmaddwd serves 8 K values.
template <QType T, int MR>
__attribute__((target("avx2,fma"))) static void avx2_nibble_rows(const QuantizedActs& a, const PackedWeight& w,
                                                             int32_t* acc, int m0, int tile) {
  static_assert(T == QType::Q4 || T == QType::Q6, "nibble-plane types only");
  constexpr size_t step = packed_step_size(T);
  constexpr int zero = nibble_offset(T);  // u = w + zero
  const int G = w.groups(), K8 = w.Kp / 8, gk8 = w.group / 8;
  const __m256i ones16 = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f), hi2 = _mm256_set1_epi8(0x30);
  const uint8_t* wt = &w.data[(size_t)tile * K8 * step];
  for (int g = 0; g < G; g++) {
    __m256i s[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) s[r][0] = s[r][1] = _mm256_setzero_si256();
    for (int k8 = g * gk8; k8 < (g + 1) * gk8; k8++) {
      const uint8_t* d = wt + (size_t)k8 * step;
      const __m256i b0 = _mm256_loadu_si256((const __m256i*)d), b1 = _mm256_loadu_si256((const __m256i*)(d + 32));
      __m256i l0 = _mm256_and_si256(b0, lo4), h0 = _mm256_and_si256(_mm256_srli_epi16(b0, 4), lo4);
      __m256i l1 = _mm256_and_si256(b1, lo4), h1 = _mm256_and_si256(_mm256_srli_epi16(b1, 4), lo4);
      if constexpr (T == QType::Q6) {  // the high 2 bits into bits 4-5 (packed.h, Q6Step)
        const __m256i hv = _mm256_loadu_si256((const __m256i*)(d + 64));
        l0 = _mm256_or_si256(l0, _mm256_and_si256(_mm256_slli_epi16(hv, 4), hi2));
        l1 = _mm256_or_si256(l1, _mm256_and_si256(_mm256_slli_epi16(hv, 2), hi2));
        h0 = _mm256_or_si256(h0, _mm256_and_si256(hv, hi2));
        h1 = _mm256_or_si256(h1, _mm256_and_si256(_mm256_srli_epi16(hv, 2), hi2));
      }
#pragma GCC unroll 8
      for (int r = 0; r < MR; r++) {
        const int8_t* x = &a.q[(size_t)(m0 + r) * a.Kp + k8 * 8];
        int32_t xa, xb;
        std::memcpy(&xa, x, 4);
        std::memcpy(&xb, x + 4, 4);
        const __m256i va = _mm256_set1_epi32(xa), vb = _mm256_set1_epi32(xb);
        const __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(l0, va), _mm256_maddubs_epi16(h0, vb));
        const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(l1, va), _mm256_maddubs_epi16(h1, vb));
        s[r][0] = _mm256_add_epi32(s[r][0], _mm256_madd_epi16(p0, ones16));
        s[r][1] = _mm256_add_epi32(s[r][1], _mm256_madd_epi16(p1, ones16));
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      const __m256i corr = _mm256_set1_epi32(zero * a.gsum[(size_t)(m0 + r) * G + g]);  // u = w + zero
      alignas(32) int32_t out[16];
      _mm256_store_si256((__m256i*)out, _mm256_sub_epi32(s[r][0], corr));
      _mm256_store_si256((__m256i*)(out + 8), _mm256_sub_epi32(s[r][1], corr));
      int32_t* dst = &acc[((size_t)(m0 + r) * w.Np + tile * 16) * G + g];
      for (int c = 0; c < 16; c++) dst[(size_t)c * G] = out[c];
    }
  }
}

template <QType T, int MR>
static void avx2_nibble_block(const QuantizedActs& a, const PackedWeight& w, int32_t* acc, int m0, int mr, int tile) {
  if constexpr (MR > 1) {
    if (mr < MR) return avx2_nibble_block<T, MR - 1>(a, w, acc, m0, mr, tile);
  }
  avx2_nibble_rows<T, MR>(a, w, acc, m0, tile);
}

template <QType T>
static void avx2_nibble_gemm(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
  constexpr int MR = 4;  // 8 accumulators + 4 weight vectors + 2 broadcasts + 2 constants = 16 ymm
  const int mblocks = (a.M + MR - 1) / MR;
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)a.M * w.Np * w.Kp > (1 << 20))
  for (int tile = 0; tile < w.Np / 16; tile++)
    for (int mb = 0; mb < mblocks; mb++) avx2_nibble_block<T, MR>(a, w, acc, mb * MR, std::min(MR, a.M - mb * MR), tile);
}

// Same arithmetic as quantize_acts_ref, 8 lanes at a time (bit-exact, like the AVX-512 one).
__attribute__((target("avx2,fma"))) void quantize_row_avx2(const float* r, int K, int Kp, int bits, float clip,
                                                           int group, int8_t* qr, float* scale, int32_t* gsum) {
  const int qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 vmax = _mm256_setzero_ps();
  int k = 0;
  // max(new, old): maxps returns its second operand when either is NaN, so NaN is skipped
  for (; k + 8 <= K; k += 8) vmax = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(r + k), absmask), vmax);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  float amax = 0;
  for (float v : lanes) amax = std::max(amax, v);
  for (; k < K; k++) amax = std::max(amax, std::fabs(r[k]));
  const float s = act_scale(amax, clip, qmax);
  *scale = s;
  const __m256 vs = _mm256_set1_ps(s), lo = _mm256_set1_ps((float)qmin), hi = _mm256_set1_ps((float)qmax);
  for (int gi = 0; gi < Kp / group; gi++) {
    const int kb = gi * group, ke = std::min(K, kb + group);
    __m256i sum = _mm256_setzero_si256();
    int32_t total = 0;
    int kk = kb;
    for (; kk + 8 <= ke; kk += 8) {
      __m256 v = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(r + kk), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
      v = _mm256_andnot_ps(nan, _mm256_min_ps(_mm256_max_ps(v, lo), hi));
      const __m256i q = _mm256_cvtps_epi32(v);
      sum = _mm256_add_epi32(sum, q);
      alignas(32) int32_t qi[8];
      _mm256_store_si256((__m256i*)qi, q);
      for (int j = 0; j < 8; j++) qr[kk + j] = (int8_t)qi[j];
    }
    alignas(32) int32_t part[8];
    _mm256_store_si256((__m256i*)part, sum);
    for (int32_t v : part) total += v;
    for (; kk < ke; kk++) {
      qr[kk] = act_code(r[kk], s, qmin, qmax);
      total += qr[kk];
    }
    gsum[gi] = total;
  }
  std::memset(qr + K, 0, (size_t)(Kp - K));
}

void gemm_acc_avx2(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
  if (w.type == QType::Q4) return avx2_nibble_gemm<QType::Q4>(a, w, acc);
  if (w.type == QType::Q6) return avx2_nibble_gemm<QType::Q6>(a, w, acc);
#pragma omp parallel for collapse(2) if ((int64_t)a.M * w.Np * w.Kp > (1 << 20))
  for (int m = 0; m < a.M; m++)
    for (int tile = 0; tile < w.Np / 16; tile++) avx2_q8_tile(a, w, acc, m, tile);
}

}  // namespace kt
