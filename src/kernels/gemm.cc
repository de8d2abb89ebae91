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
void spotrf_(const char* uplo, const int* n, float* a, const int* lda, int* info);
void strtri_(const char* uplo, const char* diag, const int* n, float* a, const int* lda, int* info);
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

namespace {
template <typename T>
void accumulate_gram_into(const float* x, int64_t rows, int64_t n, T* h) {
  blas_single_threaded();
  if (rows <= 0 || n <= 0) return;
  // sgemm's tiles of C = X^T X (kGemmTileM x kGemmTileN from 0, one BLAS call each: the bits
  // sgemm gives), skipping those wholly below the diagonal; each element on or above the
  // diagonal is added to h once, and mirrored below it from there.
  const int64_t tm = (n + kGemmTileM - 1) / kGemmTileM, tn = (n + kGemmTileN - 1) / kGemmTileN, tiles = tm * tn;
  const bool par = tiles > 1 && n * n * rows >= (int64_t(1) << 20) && !omp_in_parallel();
#pragma omp parallel if (par)
  {
    std::vector<float> c((size_t)(kGemmTileM * kGemmTileN));
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tiles; t++) {
      const int64_t i0 = (t / tn) * kGemmTileM, j0 = (t % tn) * kGemmTileN;
      const int64_t m = std::min(kGemmTileM, n - i0), w = std::min(kGemmTileN, n - j0);
      if (i0 > j0 + w - 1) continue;  // every element below the diagonal
      blas_gemm_tile(true, false, (int)m, (int)w, (int)rows, 1.0f, x + i0, (int)n, x + j0, (int)n, 0.0f, c.data(), (int)w);
      for (int64_t i = i0; i < i0 + m; i++)
        for (int64_t j = std::max(i, j0); j < j0 + w; j++) {
          const T v = c[(size_t)((i - i0) * w + (j - j0))];
          h[i * n + j] += v;
          if (j != i) h[j * n + i] += v;
        }
    }
  }
}
}  // namespace

void accumulate_gram(const float* x, int64_t rows, int64_t n, double* h) { accumulate_gram_into(x, rows, n, h); }
void accumulate_gram(const float* x, int64_t rows, int64_t n, float* h) { accumulate_gram_into(x, rows, n, h); }

namespace {

constexpr int64_t kFactorBlock = 256;  // the fixed blocks of the factorisation (not thread-dependent)

// The factorisation's LAPACK and BLAS calls, by element type (row-major BLAS; LAPACK column-major).
void potrf(int n, double* a, int lda, int* info) { dpotrf_("U", &n, a, &lda, info); }
void potrf(int n, float* a, int lda, int* info) { spotrf_("U", &n, a, &lda, info); }
void trtri(int n, double* a, int lda, int* info) { dtrtri_("U", "N", &n, a, &lda, info); }
void trtri(int n, float* a, int lda, int* info) { strtri_("U", "N", &n, a, &lda, info); }
void trsm_right_lower_t(int m, int n, const double* a, int lda, double* b, int ldb) {
  cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m, n, 1.0, a, lda, b, ldb);
}
void trsm_right_lower_t(int m, int n, const float* a, int lda, float* b, int ldb) {
  cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, m, n, 1.0f, a, lda, b, ldb);
}

// In place, row-major: the lower triangle of a symmetric positive definite A [n, n] becomes L
// with A = L L^T (right-looking by blocks; the strict upper triangle is left as scratch). One
// BLAS call per diagonal block, panel block and trailing tile, the blocks and tiles spread over
// OpenMP threads: the same bits for any thread count. False if A is not positive definite.
template <typename T>
bool cholesky_lower(T* a, int64_t n) {
  const int64_t B = kFactorBlock;
  const int ld = (int)n;
  for (int64_t k0 = 0; k0 < n; k0 += B) {
    const int kb = (int)std::min(B, n - k0);
    int info = 0;
    // the block read column-major is its transpose: LAPACK's upper factor is the row-major lower L
    potrf(kb, a + k0 * n + k0, ld, &info);
    if (info != 0) return false;
    const int64_t r0 = k0 + kb, nb = (n - r0 + B - 1) / B;
    if (nb == 0) break;
#pragma omp parallel for schedule(dynamic, 1) if (nb > 1 && !omp_in_parallel())
    for (int64_t ib = 0; ib < nb; ib++) {  // panel: A_IK <- A_IK L_KK^-T
      const int64_t i0 = r0 + ib * B;
      trsm_right_lower_t((int)std::min(B, n - i0), kb, a + k0 * n + k0, ld, a + i0 * n + k0, ld);
    }
    const int64_t tiles = nb * (nb + 1) / 2;  // the lower tiles (I >= J) of the trailing matrix
#pragma omp parallel for schedule(dynamic, 1) if (tiles > 1 && !omp_in_parallel())
    for (int64_t t = 0; t < tiles; t++) {
      int64_t I = 0;
      while ((I + 1) * (I + 2) / 2 <= t) I++;
      const int64_t J = t - I * (I + 1) / 2, i0 = r0 + I * B, j0 = r0 + J * B;
      blas_gemm_tile(false, true, (int)std::min(B, n - i0), (int)std::min(B, n - j0), kb, T(-1), a + i0 * n + k0, ld,
                     a + j0 * n + k0, ld, T(1), a + i0 * n + j0, ld);
    }
  }
  return true;
}

// In place, row-major: a lower triangular L (zero above the diagonal) becomes L^-1. Block
// columns from the last: X_JJ = L_JJ^-1, then X_IJ = -(sum_{K=J+1..I} X_IK L_KJ) X_JJ for each
// row block I below, from a copy of L's column J (overwritten as it goes); the row blocks go
// over threads, one fixed sequence of BLAS calls each.
template <typename T>
bool invert_lower(T* a, int64_t n) {
  const int64_t B = kFactorBlock, nb = (n + B - 1) / B;
  const int ld = (int)n;
  std::vector<T> panel;
  for (int64_t J = nb - 1; J >= 0; J--) {
    const int64_t j0 = J * B;
    const int jb = (int)std::min(B, n - j0);
    int info = 0;
    trtri(jb, a + j0 * n + j0, ld, &info);  // column-major upper = row-major lower
    if (info != 0) return false;
    const int64_t below = n - (j0 + jb);
    if (below == 0) continue;
    panel.resize((size_t)(below * jb));
    for (int64_t r = 0; r < below; r++)
      std::copy(a + (j0 + jb + r) * n + j0, a + (j0 + jb + r) * n + j0 + jb, panel.data() + r * jb);
#pragma omp parallel for schedule(dynamic, 1) if (nb - J - 1 > 1 && !omp_in_parallel())
    for (int64_t I = J + 1; I < nb; I++) {
      const int64_t i0 = I * B;
      const int ib = (int)std::min(B, n - i0), K = (int)(i0 + ib - (j0 + jb));
      std::vector<T> t((size_t)ib * jb);
      blas_gemm_tile(false, false, ib, jb, K, T(1), a + i0 * n + j0 + jb, ld, panel.data(), jb, T(0), t.data(), jb);
      blas_gemm_tile(false, false, ib, jb, jb, T(-1), t.data(), jb, a + j0 * n + j0, ld, T(0), a + i0 * n + j0, ld);
    }
  }
  return true;
}

template <typename T>
bool inverse_upper_cholesky_t(T* h, int64_t n) {
  blas_single_threaded();
  if (n <= 0) return true;
  if (n > INT32_MAX / 2) return false;
  const size_t nn = (size_t)n * (size_t)n;
  std::reverse(h, h + nn);  // J H J: element (i, j) moves to (n-1-i, n-1-j)
  if (!cholesky_lower(h, n)) return false;
  for (int64_t i = 0; i < n; i++)  // L is lower triangular: the scratch above it goes
    std::fill(h + (size_t)i * n + i + 1, h + (size_t)(i + 1) * n, T(0));
  if (!invert_lower(h, n)) return false;
  std::reverse(h, h + nn);  // J L^-1 J: upper triangular
  return true;
}

}  // namespace

bool inverse_upper_cholesky(double* h, int64_t n) { return inverse_upper_cholesky_t(h, n); }
bool inverse_upper_cholesky(float* h, int64_t n) { return inverse_upper_cholesky_t(h, n); }

}  // namespace kt
