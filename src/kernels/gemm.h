// Single-precision GEMM (row-major) through OpenBLAS, bit-identical for any number of threads.
// OpenBLAS's own threading is not: with some kernels (OPENBLAS_CORETYPE=Haswell in 0.3.21,
// which this workplace sets on AMD EPYC) the edge kernels a partition uses depend on how many
// threads split the matrix, and the low bits of C move with OMP_NUM_THREADS. Here OpenBLAS
// runs single-threaded and kurtail cuts C into tiles of a fixed size (kGemmTileM x kGemmTileN,
// independent of the thread count), one BLAS call per tile, spread over OpenMP threads.
#pragma once
#include <cstdint>

namespace kt {

inline constexpr int64_t kGemmTileM = 64, kGemmTileN = 256;

// C = alpha * op(A) * op(B) + beta * C, op(A) [M,K], op(B) [K,N]; lda/ldb/ldc as in cblas.
void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// The same in double precision, with the same fixed tiles (GPTQ's lazy-batch updates).
void dgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
           const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// h [n, n] (row-major, double, symmetric) += X^T X for x [rows, n]: the float products sgemm
// would give, computed only for the tiles that reach the upper triangle (half the work) and
// without an n x n float buffer (462 MiB for a 7B down_proj's Hessian), accumulated in double.
void accumulate_gram(const float* x, int64_t rows, int64_t n, double* h);
// The same, accumulated in float (GPTQ's f32 precision: half the n^2 memory).
void accumulate_gram(const float* x, int64_t rows, int64_t n, float* h);

// In place: a symmetric positive definite H [n, n] (row-major) becomes the upper triangular U
// with U^T U = H^-1 (zeros below the diagonal), the factor GPTQ propagates errors with. One
// Cholesky and one triangular inverse of the index-reversed matrix (LAPACK dpotrf + dtrtri,
// 2n^3/3 flops) instead of inverting H and factoring the inverse (8n^3/3): with J the reversal,
// J H J = L L^T gives H^-1 = (J L^-1 J)^T (J L^-1 J), and J L^-1 J is upper triangular. Both go
// by fixed 256 x 256 blocks, one single-threaded BLAS/LAPACK call per block, the blocks spread
// over threads (a 7B down_proj's 11008^2 factor was one thread's 30 s): the same bits for any
// thread count. Returns false when H is not positive definite.
bool inverse_upper_cholesky(double* h, int64_t n);
// The same in float (LAPACK spotrf + strtri), by the same blocks.
bool inverse_upper_cholesky(float* h, int64_t n);

}  // namespace kt
