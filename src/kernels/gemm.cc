#include "kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <mutex>

extern "C" void openblas_set_num_threads(int);

namespace kt {

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
  if (M <= 0 || N <= 0) return;
  const int64_t tm = (M + kGemmTileM - 1) / kGemmTileM, tn = (N + kGemmTileN - 1) / kGemmTileN;
  const int64_t tiles = tm * tn;
  // Threads only pay off above ~1 MFLOP; the tiles (and so the bits) are the same either way.
  const bool par = tiles > 1 && M * N * K >= (int64_t(1) << 20) && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < tiles; t++) {
    const int64_t i0 = (t / tn) * kGemmTileM, j0 = (t % tn) * kGemmTileN;
    const int64_t m = M - i0 < kGemmTileM ? M - i0 : kGemmTileM, n = N - j0 < kGemmTileN ? N - j0 : kGemmTileN;
    const float* a = trans_a ? A + i0 : A + i0 * lda;
    const float* b = trans_b ? B + j0 * ldb : B + j0;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)K, alpha, a, (int)lda, b, (int)ldb, beta, C + i0 * ldc + j0, (int)ldc);
  }
}

}  // namespace kt
