// AVX-512 VNNI integer GEMM and the AVX-512 per-token activation quantizer.
//
// GEMM: a register-blocked micro-kernel of MR activation rows x NT tiles of 16 output channels.
// All MR*NT int32 accumulators stay in zmm registers for a whole weight group (the loops are
// fully unrolled over compile-time MR/NT), each unpacked Q4 weight vector feeds MR vpdpbusd and
// each broadcast activation word feeds NT. The float epilogue (zero-point correction, weight
// and token scales, bias) runs on the registers at the end of each group and stores y directly,
// so no int32 buffer is written for the float path. The integer-output variant (Out::Int) is the
// same loop with a different store; the tests check it bit-exactly against the scalar kernel.
//
// Compiled with per-function target attributes; the dispatcher calls this only when CPUID
// reports AVX-512 F/BW/VNNI.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/int_gemm_epilogue.h"
#include "kernels/packed.h"

// GCC 12 reports the deliberately undefined pass-through operands inside its own intrinsics
// (_mm512_cvtepi32_ps, _mm512_reduce_*) and the per-group sums (written at group 0 before any
// read; G >= 1) as (maybe-)uninitialized.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define KT_VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vnni,fma")))

namespace kt {
namespace {

enum class Out { Int, Float };

struct GemmArgs {
  const QuantizedActs* a;
  const PackedWeight* w;
  const float* bias;  // Float: may be null
  float* y;           // Float: [M, N]
  int32_t* acc;       // Int: [M, Np, G]
  const int8_t* xq;   // activation codes [M, Kp]; for Q8 weights flipped to x + 128 (as u8 bits)
};

template <QType T, int MR, int NT, Out O>
KT_VNNI_TARGET static inline void micro(const GemmArgs& g, int m0, int tile0) {
  const QuantizedActs& a = *g.a;
  const PackedWeight& w = *g.w;
  const int G = w.groups(), gk8 = w.group / 8, K8 = w.Kp / 8;
  constexpr bool nibbles = T == QType::Q4 || T == QType::Q6;  // u = w + zero, unsigned
  constexpr int zero = nibble_offset(T);
  constexpr size_t step = packed_step_size(T);
  const size_t tstride = (size_t)K8 * step;
  const __m512i lo4 = _mm512_set1_epi8(0x0f), hi2 = _mm512_set1_epi8(0x30);
  // Q6: per 16-bit lane shift counts that bring each half's high bits to bits 4-5 (packed.h,
  // Q6Step): left 4 / 2 for the low nibbles of the first / second 32 bytes, right 0 / 2 for the high.
  const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  const int8_t* xr[MR];
  for (int r = 0; r < MR; r++) xr[r] = g.xq + (size_t)(m0 + r) * a.Kp;
  const uint8_t* wt = &w.data[(size_t)tile0 * tstride];
  // Grouped weights: the per-group float partial sums live here (L1) between groups.
  alignas(64) float fsum[MR][NT][16];
  for (int gi = 0; gi < G; gi++) {
    __m512i s[MR][NT];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
      for (int t = 0; t < NT; t++) s[r][t] = _mm512_setzero_si512();
    const int kb = gi * gk8, ke = kb + gk8;
    for (int k8 = kb; k8 < ke; k8++) {
      // Low then high half of the 8 K values: only NT weight vectors are live at a time, which
      // keeps GCC from spilling accumulators.
#pragma GCC unroll 2
      for (int h = 0; h < 2; h++) {
        __m512i wv[NT];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
          const uint8_t* d = wt + t * tstride + (size_t)k8 * step;
          if constexpr (T == QType::Q4) {
            const __m512i b = _mm512_loadu_si512(d);
            wv[t] = _mm512_and_si512(h == 0 ? b : _mm512_srli_epi16(b, 4), lo4);
          } else if constexpr (T == QType::Q6) {
            const __m512i b = _mm512_loadu_si512(d);
            const __m512i hv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i*)(d + 64)));
            const __m512i nib = _mm512_and_si512(h == 0 ? b : _mm512_srli_epi16(b, 4), lo4);
            const __m512i top = h == 0 ? _mm512_sllv_epi16(hv, shl) : _mm512_srlv_epi16(hv, shr);
            wv[t] = _mm512_ternarylogic_epi32(nib, top, hi2, 0xF8);  // nib | (top & hi2)
          } else {
            wv[t] = _mm512_loadu_si512(d + 64 * h);
          }
        }
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
          int32_t xw;
          std::memcpy(&xw, xr[r] + k8 * 8 + 4 * h, 4);
          const __m512i v = _mm512_set1_epi32(xw);
          if constexpr (nibbles) {  // u = w + zero (unsigned) x codes (signed)
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) s[r][t] = _mm512_dpbusd_epi32(s[r][t], wv[t], v);
          } else {  // (x + 128) as u8 times w as s8; 128 * sum w is subtracted below
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) s[r][t] = _mm512_dpbusd_epi32(s[r][t], v, wv[t]);
          }
        }
      }
    }
    // zero-point corrections: Q4 / Q6 subtract 8 / 32 * (sum of the row's codes in this group),
    // Q8 subtracts 128 * (sum of the channel's weights in this group)
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
      for (int t = 0; t < NT; t++) {
        const int n0 = (tile0 + t) * 16;
        if constexpr (nibbles)
          s[r][t] = _mm512_sub_epi32(s[r][t], _mm512_set1_epi32(zero * a.gsum[(size_t)(m0 + r) * G + gi]));
        else
          s[r][t] = _mm512_sub_epi32(s[r][t], _mm512_loadu_si512(&w.offsets_gn[(size_t)gi * w.Np + n0]));
        if constexpr (O == Out::Int) {
          alignas(64) int32_t v[16];
          _mm512_store_si512(v, s[r][t]);
          int32_t* dst = &g.acc[((size_t)(m0 + r) * w.Np + n0) * G + gi];
          for (int c = 0; c < 16; c++) dst[(size_t)c * G] = v[c];
        } else {
          int_epilogue_group(fsum[r][t], _mm512_loadu_ps(&w.scales_gn[(size_t)gi * w.Np + n0]), s[r][t], gi);
        }
      }
  }
  if constexpr (O == Out::Float) {
    // y = s_x[m] * sum_g s_w[n, g] * acc_g (+ bias), stored with a mask past N
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
      const __m512 sx = _mm512_set1_ps(a.scale[m0 + r]);
#pragma GCC unroll 4
      for (int t = 0; t < NT; t++) {
        const int n0 = (tile0 + t) * 16;
        if (n0 >= w.N) continue;
        const __mmask16 mask = w.N - n0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (w.N - n0)) - 1);
        int_epilogue_store(g.y + (size_t)(m0 + r) * w.N + n0, sx, fsum[r][t], g.bias ? g.bias + n0 : nullptr, mask);
      }
    }
  }
}

// Dispatch on the rows left (1..MR) so every call runs a fully unrolled block.
template <QType T, int MR, int NT, Out O>
static void block(const GemmArgs& g, int m0, int mr, int tile0) {
  if constexpr (MR > 1) {
    if (mr < MR) return block<T, MR - 1, NT, O>(g, m0, mr, tile0);
  }
  micro<T, MR, NT, O>(g, m0, tile0);
}

// 5 rows x 4 tiles: 20 accumulators + 4 weight vectors + 1 broadcast + the nibble mask (26 of
// the 32 zmm registers). Best of 6x3, 8x3, 5x4 and 4x4 in A/B runs at 128 x 4096 x 4096,
// 128 x 11008 x 4096 and 512 x 704 x 256 (docs/RESULTS.md).
constexpr int kMR = 5, kNT = 4;

template <QType T, Out O>
static void gemm_vnni_t(const GemmArgs& g) {
  const QuantizedActs& a = *g.a;
  const int tiles = g.w->Np / 16, tblocks = (tiles + kNT - 1) / kNT, mblocks = (a.M + kMR - 1) / kMR;
  // Threads split the tile blocks; inside one, the row blocks reuse its weights from L2.
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)a.M * g.w->Np * g.w->Kp > (1 << 20))
  for (int tb = 0; tb < tblocks; tb++)
    for (int mb = 0; mb < mblocks; mb++) {
      const int m0 = mb * kMR, mr = std::min(kMR, a.M - m0), t0 = tb * kNT;
      if (t0 + kNT <= tiles) {
        block<T, kMR, kNT, O>(g, m0, mr, t0);
      } else {
        for (int t = t0; t < tiles; t++) block<T, kMR, 1, O>(g, m0, mr, t);
      }
    }
}

template <Out O>
static void gemm_vnni(GemmArgs g) {
  g.xq = g.a->q.data();
  if (g.w->type == QType::Q4) return gemm_vnni_t<QType::Q4, O>(g);
  if (g.w->type == QType::Q6) return gemm_vnni_t<QType::Q6, O>(g);
  // Q8: vpdpbusd needs one unsigned operand; x + 128 (the sign bit flipped) is made once here
  // instead of once per broadcast in the inner loop.
  std::vector<int8_t> flipped(g.a->q.size());
  for (size_t i = 0; i < flipped.size(); i++) flipped[i] = (int8_t)(g.a->q[i] ^ 0x80);
  g.xq = flipped.data();
  gemm_vnni_t<QType::Q8, O>(g);
}

}  // namespace

void gemm_acc_vnni(const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
  gemm_vnni<Out::Int>({&a, &w, nullptr, nullptr, acc, nullptr});
}

void gemm_f32_vnni(const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y) {
  gemm_vnni<Out::Float>({&a, &w, bias, y, nullptr, nullptr});
}

// Same arithmetic as quantize_acts_ref, 16 lanes at a time: IEEE division and round-to-nearest-
// even give the same codes bit for bit (the tests compare the two on random, NaN and Inf input).
KT_VNNI_TARGET void quantize_row_avx512(const float* r, int K, int Kp, int bits, float clip, int group, int8_t* qr,
                                        float* scale, int32_t* gsum) {
  const int qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
  __m512 vmax = _mm512_setzero_ps();
  int k = 0;
  // max(new, old): vmaxps returns its second operand when either is NaN, so NaN is skipped as
  // std::max(amax, NaN) skips it in the reference
  for (; k + 16 <= K; k += 16) vmax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(r + k)), vmax);
  float amax = _mm512_reduce_max_ps(vmax);
  for (; k < K; k++) amax = std::max(amax, std::fabs(r[k]));
  const float s = act_scale(amax, clip, qmax);
  *scale = s;
  const __m512 vs = _mm512_set1_ps(s), lo = _mm512_set1_ps((float)qmin), hi = _mm512_set1_ps((float)qmax);
  const int G = Kp / group;
  for (int gi = 0; gi < G; gi++) {
    const int kb = gi * group, ke = std::min(K, kb + group);
    __m512i sum = _mm512_setzero_si512();
    int32_t tail = 0;
    int kk = kb;
    for (; kk + 16 <= ke; kk += 16) {
      __m512 v = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(r + kk), vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      v = _mm512_maskz_mov_ps((__mmask16)~nan, _mm512_min_ps(_mm512_max_ps(v, lo), hi));
      const __m512i q = _mm512_cvtps_epi32(v);
      sum = _mm512_add_epi32(sum, q);
      _mm_storeu_si128((__m128i*)(qr + kk), _mm512_cvtepi32_epi8(q));
    }
    for (; kk < ke; kk++) {
      qr[kk] = act_code(r[kk], s, qmin, qmax);
      tail += qr[kk];
    }
    gsum[gi] = _mm512_reduce_add_epi32(sum) + tail;
  }
  std::memset(qr + K, 0, (size_t)(Kp - K));
}

}  // namespace kt
