// The integer GEMM kernels. Each computes acc[m, n, g] = sum_{k in g} xq[m,k] * w[n,k] exactly.
// Q4 weights are stored as u = w + 8, so every kernel accumulates sum u*x and subtracts
// 8 * sum x (the activation group sums); Q8 kernels use x + 128 as the unsigned operand
// (VNNI) or widen to 16 bits (AVX2) and the scalar kernel reads the values directly.
// Compiled with per-function target attributes so one binary runs everywhere; the dispatcher
// (runtime/packed.cc) only calls what CPUID reports.
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

// Register block: MR rows of x times NT tiles of 16 channels -> MR*NT zmm accumulators. Each
// weight vector (unpacked once per k8 step) feeds MR dot products and each broadcast x word
// feeds NT, which keeps the two vpdpbusd ports busy instead of the load/shuffle ports.
template <int MR, int NT>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static inline void vnni_block(
    const QuantizedActs& a, const PackedWeight& w, int32_t* acc, int m0, int mr, int tile0, int g) {
  const int G = w.groups(), K8 = w.Kp / 8, gk8 = w.group / 8;
  const size_t step = w.type == QType::Q4 ? 64 : 128;
  const __m512i lo4 = _mm512_set1_epi8(0x0f), flip = _mm512_set1_epi8((char)0x80);
  __m512i s[MR][NT];
  for (int r = 0; r < MR; r++)
    for (int t = 0; t < NT; t++) s[r][t] = _mm512_setzero_si512();
  for (int k8 = g * gk8; k8 < (g + 1) * gk8; k8++) {
    __m512i wa[NT], wb[NT];
    for (int t = 0; t < NT; t++) {
      const uint8_t* d = &w.data[((size_t)(tile0 + t) * K8 + k8) * step];
      if (w.type == QType::Q4) {
        const __m512i b = _mm512_loadu_si512(d);
        wa[t] = _mm512_and_si512(b, lo4);
        wb[t] = _mm512_and_si512(_mm512_srli_epi16(b, 4), lo4);
      } else {
        wa[t] = _mm512_loadu_si512(d);
        wb[t] = _mm512_loadu_si512(d + 64);
      }
    }
    for (int r = 0; r < MR; r++) {
      if (r >= mr) break;
      const int8_t* x = &a.q[(size_t)(m0 + r) * a.Kp + k8 * 8];
      int32_t xa, xb;
      std::memcpy(&xa, x, 4);
      std::memcpy(&xb, x + 4, 4);
      __m512i va = _mm512_set1_epi32(xa), vb = _mm512_set1_epi32(xb);
      if (w.type == QType::Q4) {
        for (int t = 0; t < NT; t++) {
          s[r][t] = _mm512_dpbusd_epi32(s[r][t], wa[t], va);
          s[r][t] = _mm512_dpbusd_epi32(s[r][t], wb[t], vb);
        }
      } else {  // (x + 128) as u8 times w as s8; 128 * sum w is subtracted below
        va = _mm512_xor_si512(va, flip);
        vb = _mm512_xor_si512(vb, flip);
        for (int t = 0; t < NT; t++) {
          s[r][t] = _mm512_dpbusd_epi32(s[r][t], va, wa[t]);
          s[r][t] = _mm512_dpbusd_epi32(s[r][t], vb, wb[t]);
        }
      }
    }
  }
  for (int r = 0; r < mr; r++)
    for (int t = 0; t < NT; t++) {
      int32_t out[16];
      _mm512_storeu_si512(out, s[r][t]);
      const int m = m0 + r;
      for (int c = 0; c < 16; c++) {
        const int n = (tile0 + t) * 16 + c;
        int32_t v = out[c];
        if (w.type == QType::Q4) v -= 8 * a.gsum[(size_t)m * G + g];
        else v -= w.offsets[(size_t)n * G + g];
        acc[((size_t)m * w.Np + n) * G + g] = v;
      }
    }
}

template <int MR, int NT>
static void gemm_acc_vnni_t(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
  const int G = w.groups(), tiles = w.Np / 16, pairs = (tiles + NT - 1) / NT, mblocks = (a.M + MR - 1) / MR;
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)a.M * w.Np * w.Kp > (1 << 20))
  for (int tp = 0; tp < pairs; tp++)
    for (int mb = 0; mb < mblocks; mb++) {
      const int m0 = mb * MR, mr = std::min(MR, a.M - m0), t0 = tp * NT;
      for (int g = 0; g < G; g++) {
        if (t0 + NT <= tiles) {
          vnni_block<MR, NT>(a, w, acc, m0, mr, t0, g);
        } else {  // the last 1..NT-1 tiles
          for (int t = t0; t < tiles; t++) vnni_block<MR, 1>(a, w, acc, m0, mr, t, g);
        }
      }
    }
}

// 6 rows x 3 tiles: 18 accumulators + 6 weight vectors + 2 broadcasts fit the 32 zmm registers,
// and each unpacked Q4 vector feeds 6 dot products. Measured against 4x2, 8x2, 4x4, 5x4, 7x3,
// 8x3 and 12x2 at M = 128, N = K = 4096 (docs/RESULTS.md): 6x3 was fastest (+20% over 4x2).
void gemm_acc_vnni(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) { gemm_acc_vnni_t<6, 3>(a, w, acc); }

}  // namespace kt
