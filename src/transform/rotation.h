// Orthogonal transforms applied to row vectors (x <- x Q), with fast paths:
//  - Hadamard: Q = D (H_m (x) H_{2^k}) / sqrt(n), D = diag(random signs) or I. The 2^k part
//    runs as a fast Walsh-Hadamard transform (O(n log n)); H_m comes from a Paley construction.
//  - dense: any orthogonal matrix (seeded random via QR of a Gaussian, or learned).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "util/row_transform.h"

namespace kt {

// In-place unnormalised FWHT of each row of x [rows, n], n a power of two.
void fwht_rows(float* x, int64_t rows, int n);

// A Hadamard matrix of order m (entries +-1, H H^T = m I) from Paley I/II over GF(q), or
// Sylvester for m in {1, 2}. Returns an empty vector when no construction is known.
std::vector<int8_t> paley_hadamard(int m);
// Splits n = 2^k * m with the largest k such that an order-m Hadamard exists; m = 0 if none.
void hadamard_factor(int n, int* pow2, int* m);

class Rotation {
 public:
  // Hadamard of order n (random signs if `random_signs`, seeded); falls back to a seeded
  // random orthogonal matrix when no Hadamard of order n can be built (kind() says which).
  static Rotation hadamard(int n, bool random_signs, uint64_t seed);
  // Block-diagonal Sylvester Hadamard: n/block copies of H_block / sqrt(block) on the diagonal
  // (block a power of two dividing n). What vLLM's `hadamard` transform with head_dim = block
  // computes (compressed-tensors deterministic_hadamard_matrix), so an R4 built this way
  // exports as an online transform vLLM runs with its fast kernel. Fails naming the sizes.
  static Rotation block_hadamard(int n, int block);
  static Rotation random_orthogonal(int n, uint64_t seed);
  static Rotation from_matrix(Tensor q);  // q [n, n], assumed orthogonal
  Rotation() = default;

  int n() const { return n_; }
  // Size of each diagonal Hadamard block (n for a full Hadamard; 0 for a dense rotation).
  int block() const { return kind_ == "hadamard" ? m_ * pow2_ : 0; }
  const std::string& kind() const { return kind_; }
  // x [rows, n] <- x Q
  void apply(float* x, int64_t rows) const;
  // x [rows, n] <- x Q^T (the inverse)
  void apply_inverse(float* x, int64_t rows) const;
  Tensor matrix() const;  // Q as a dense [n, n] tensor

 private:
  int n_ = 0;
  std::string kind_;
  // Hadamard form: n / (m * pow2) diagonal blocks of H_m (x) H_pow2 (one block unless
  // block_hadamard built it)
  int pow2_ = 1, m_ = 1;
  std::vector<float> hm_;     // H_m as floats [m, m]
  std::vector<float> signs_;  // empty: all +1
  // dense form: Q and its transpose (kept so the hot path does not transpose per call)
  Tensor q_, qt_;
  void apply_hadamard(float* x, int64_t rows, bool transpose) const;
};

// A rotation as a RowTransform (x <- x Q per row), for the fused online-rotation paths.
class RotationRows : public RowTransform {
 public:
  explicit RotationRows(std::shared_ptr<const Rotation> r) : r_(std::move(r)) {}
  int64_t size() const override { return r_->n(); }
  void apply_row(float* row) const override { r_->apply(row, 1); }

 private:
  std::shared_ptr<const Rotation> r_;
};

}  // namespace kt
