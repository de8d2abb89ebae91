#include "kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <vector>

extern "C" {
void openblas_set_num_threads(int);
// LAPACK (OpenBLAS exports it), column-major
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda, int* info);
}

namespace kt {

namespace {

// sum_k a[k] * b[k] in a fixed order: 16 lane sums (vectorised), then the lanes in order.
float dot_fixed(const float* a, const float* b, int64_t K) {
  float acc[16] = {};
  int64_t k = 0;
  for (; k + 16 <= K; k += 16)
    for (int i = 0; i < 16; i++) acc[i] += a[k + i] * b[k + i];
  for (int i = 0; k < K; k++, i++) acc[i] += a[k] * b[k];
  float s = 0;
  for (int i = 0; i < 16; i++) s += acc[i];
  return s;
}

// One row of A (decode: M = 1). OpenBLAS runs a 1-row GEMM as a general GEMM, slowly; this is
// memory-bound work: a fixed-order dot product per output (op(B) = B^T) or a row-by-row axpy
// (op(B) = B), output blocks spread over threads, the same bits for any thread count.
void sgemm_row(bool trans_a, bool trans_b, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C) {
  std::vector<float> a((size_t)K);
  for (int64_t k = 0; k < K; k++) a[(size_t)k] = trans_a ? A[k * lda] : A[k];
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (N + kBlock - 1) / kBlock;
  const bool par = blocks > 1 && N * K >= (int64_t(1) << 18) && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
  for (int64_t blk = 0; blk < blocks; blk++) {
    const int64_t j0 = blk * kBlock, j1 = std::min(N, j0 + kBlock);
    float y[kBlock];
    if (trans_b) {
      for (int64_t j = j0; j < j1; j++) y[j - j0] = dot_fixed(a.data(), B + j * ldb, K);
    } else {
      for (int64_t j = j0; j < j1; j++) y[j - j0] = 0;
      for (int64_t k = 0; k < K; k++) {
        const float ak = a[(size_t)k];
        const float* b = B + k * ldb;
        for (int64_t j = j0; j < j1; j++) y[j - j0] += ak * b[j];
      }
    }
    for (int64_t j = j0; j < j1; j++) C[j] = alpha * y[j - j0] + (beta != 0 ? beta * C[j] : 0.0f);
  }
}

// OpenBLAS runs single-threaded; kurtail's own tiles carry the threads (see gemm.h).
void blas_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void blas_gemm_tile(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                    float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b,
              ldb, beta, c, ldc);
}
void blas_gemm_tile(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                    int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b,
              ldb, beta, c, ldc);
}

// C cut into fixed kGemmTileM x kGemmTileN tiles, one BLAS call per tile, tiles over threads.
template <typename T>
void gemm_tiled(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int64_t tm = (M + kGemmTileM - 1) / kGemmTileM, tn = (N + kGemmTileN - 1) / kGemmTileN;
  const int64_t tiles = tm * tn;
  // Threads only pay off above ~1 MFLOP; the tiles (and so the bits) are the same either way.
  const bool par = tiles > 1 && M * N * K >= (int64_t(1) << 20) && !omp_in_parallel();
#pragma omp parallel for schedule(static) if (par)
  for (int64_t t = 0; t < tiles; t++) {
    const int64_t i0 = (t / tn) * kGemmTileM, j0 = (t % tn) * kGemmTileN;
    const int64_t m = M - i0 < kGemmTileM ? M - i0 : kGemmTileM, n = N - j0 < kGemmTileN ? N - j0 : kGemmTileN;
    const T* a = trans_a ? A + i0 : A + i0 * lda;
    const T* b = trans_b ? B + j0 * ldb : B + j0;
    blas_gemm_tile(trans_a, trans_b, (int)m, (int)n, (int)K, alpha, a, (int)lda, b, (int)ldb, beta, C + i0 * ldc + j0,
                   (int)ldc);
  }
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  blas_single_threaded();
  if (M <= 0 || N <= 0) return;
  if (M == 1) return sgemm_row(trans_a, trans_b, N, K, alpha, A, lda, B, ldb, beta, C);
  gemm_tiled(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  blas_single_threaded();
  if (M <= 0 || N <= 0) return;
  gemm_tiled(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

bool inverse_upper_cholesky(double* h, int64_t n) {
  blas_single_threaded();
  if (n <= 0) return true;
  if (n > INT32_MAX / 2) return false;
  const size_t nn = (size_t)n * (size_t)n;
  std::reverse(h, h + nn);  // J H J: element (i, j) moves to (n-1-i, n-1-j)
  // The row-major buffer read column-major is the same symmetric matrix; LAPACK's upper factor R
  // (A = R^T R, column-major) is, read row-major, the lower L with A = L L^T.
  const int ni = (int)n;
  int info = 0;
  dpotrf_("U", &ni, h, &ni, &info);
  if (info != 0) return false;
  dtrtri_("U", "N", &ni, h, &ni, &info);  // R^-1, i.e. L^-1 read row-major
  if (info != 0) return false;
  for (int64_t i = 0; i < n; i++)  // LAPACK leaves the other triangle as it was
    std::fill(h + (size_t)i * n + i + 1, h + (size_t)(i + 1) * n, 0.0);
  std::reverse(h, h + nn);  // J L^-1 J: upper triangular
  return true;
}

}  // namespace kt
