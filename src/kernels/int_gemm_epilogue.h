// The float epilogue of the AVX-512 integer GEMM kernels (kernels_vnni.cc, kernels_amx.cc),
// defined once so that their outputs are the same bits by construction: the FMAs are spelled
// out here, and both files build with -ffp-contract=off so the compiler adds none of its own.
// Included only by those two files (intrinsics; their callers carry the wider target).
#pragma once
#include <immintrin.h>

#define KT_INT_EPILOGUE_TARGET __attribute__((target("avx512f,fma")))

namespace kt {

// One weight group's int32 sums into the running float sums of 16 channels:
// fsum = s_w * acc for the first group, fma(s_w, acc, fsum) after it.
KT_INT_EPILOGUE_TARGET static inline void int_epilogue_group(float* fsum, __m512 sw, __m512i acc, int gi) {
  const __m512 a = _mm512_cvtepi32_ps(acc);
  _mm512_store_ps(fsum, gi == 0 ? _mm512_mul_ps(sw, a) : _mm512_fmadd_ps(sw, a, _mm512_load_ps(fsum)));
}

// y = s_x * fsum (+ bias) for up to 16 channels (mask: those below N); bias null or at y's column.
KT_INT_EPILOGUE_TARGET static inline void int_epilogue_store(float* y, __m512 sx, const float* fsum,
                                                             const float* bias, __mmask16 mask) {
  const __m512 f = _mm512_load_ps(fsum);
  const __m512 v = bias ? _mm512_fmadd_ps(sx, f, _mm512_maskz_loadu_ps(mask, bias)) : _mm512_mul_ps(sx, f);
  _mm512_mask_storeu_ps(y, mask, v);
}

}  // namespace kt
