// The scalar and AVX2 integer GEMM kernels. Each computes acc[m, n, g] = sum_{k in g} xq[m,k] * w[n,k] exactly.
// Q4 weights are stored as u = w + 8, so every kernel accumulates sum u*x and subtracts
// 8 * sum x (the activation group sums); Q8 kernels use x + 128 as the unsigned operand
// (VNNI) or widen to 16 bits (AVX2) and the scalar kernel reads the values directly.
// Compiled with per-function target attributes so one binary runs everywhere; the dispatcher
// (runtime/packed.cc) only calls what CPUID reports. The AVX-512 VNNI kernel is in kernels_vnni.cc.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "runtime/packed.h"

namespace kt {

void gemm_acc_scalar(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
  const int G = w.groups(), K8 = w.Kp / 8;
  const size_t step = w.type == QType::Q4 ? 64 : 128;
#pragma omp parallel for if ((int64_t)a.M * w.Np * w.Kp > (1 << 20))
  for (int m = 0; m < a.M; m++) {
    const int8_t* x = &a.q[(size_t)m * a.Kp];
    for (int n = 0; n < w.Np; n++) {
      const int tile = n / 16, c = n % 16;
      for (int g = 0; g < G; g++) {
        int32_t s = 0;
        for (int k8 = g * w.group / 8; k8 < (g + 1) * w.group / 8; k8++) {
          const uint8_t* d = &w.data[((size_t)tile * K8 + k8) * step];
          for (int j = 0; j < 4; j++) {
            if (w.type == QType::Q4) {
              uint8_t b = d[4 * c + j];
              s += ((b & 15) - 8) * x[k8 * 8 + j] + ((b >> 4) - 8) * x[k8 * 8 + 4 + j];
            } else {
              s += (int8_t)d[4 * c + j] * x[k8 * 8 + j] + (int8_t)d[64 + 4 * c + j] * x[k8 * 8 + 4 + j];
            }
          }
        }
        acc[((size_t)m * w.Np + n) * G + g] = s;
      }
    }
  }
}

// One row of x times one tile of 16 channels. A function of its own because OpenMP outlines
// the parallel loop body into a function without the target attribute (clang rejects vector
// types there), so the loop below only calls this.
__attribute__((target("avx2,fma"))) static void avx2_tile(const QuantizedActs& a, const PackedWeight& w, int32_t* acc,
                                                          int m, int tile) {
  const int G = w.groups(), K8 = w.Kp / 8, gk8 = w.group / 8;
  const size_t step = w.type == QType::Q4 ? 64 : 128;
  const __m256i ones16 = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f);
  const int8_t* x = &a.q[(size_t)m * a.Kp];
  for (int g = 0; g < G; g++) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();  // channels 0-7, 8-15
    for (int k8 = g * gk8; k8 < (g + 1) * gk8; k8++) {
      const uint8_t* d = &w.data[((size_t)tile * K8 + k8) * step];
      int32_t xa, xb;
      std::memcpy(&xa, x + k8 * 8, 4);
      std::memcpy(&xb, x + k8 * 8 + 4, 4);
      const __m256i va = _mm256_set1_epi32(xa), vb = _mm256_set1_epi32(xb);
      if (w.type == QType::Q4) {
        for (int h = 0; h < 2; h++) {
          __m256i b = _mm256_loadu_si256((const __m256i*)(d + 32 * h));
          __m256i ulo = _mm256_and_si256(b, lo4), uhi = _mm256_and_si256(_mm256_srli_epi16(b, 4), lo4);
          // u (0..15) x s8: pair sums <= 2*15*128, no saturation
          __m256i p = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(ulo, va), ones16),
                                       _mm256_madd_epi16(_mm256_maddubs_epi16(uhi, vb), ones16));
          if (h == 0) s0 = _mm256_add_epi32(s0, p); else s1 = _mm256_add_epi32(s1, p);
        }
      } else {
        // widen to 16 bits: exact s8 x s8
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
    }
    int32_t out[16];
    _mm256_storeu_si256((__m256i*)out, s0);
    _mm256_storeu_si256((__m256i*)(out + 8), s1);
    for (int c = 0; c < 16; c++) {
      int32_t v = out[c];
      if (w.type == QType::Q4) v -= 8 * a.gsum[(size_t)m * G + g];
      acc[((size_t)m * w.Np + tile * 16 + c) * G + g] = v;
    }
  }
}

void gemm_acc_avx2(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
#pragma omp parallel for collapse(2) if ((int64_t)a.M * w.Np * w.Kp > (1 << 20))
  for (int m = 0; m < a.M; m++)
    for (int tile = 0; tile < w.Np / 16; tile++) avx2_tile(a, w, acc, m, tile);
}

}  // namespace kt
