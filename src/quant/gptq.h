// GPTQ (Frantar et al. 2022): quantize W column by column, spreading each column's error over
// the not-yet-quantized columns through the inverse Hessian H = X^T X / n of the layer inputs.
#pragma once
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "core/quantizer.h"

namespace kt {

struct GptqOptions {
  double percdamp = 0.01;  // dampening: percdamp * mean(diag H) added to the diagonal
  int block = 128;         // lazy-batch block size
  bool act_order = false;  // quantize columns in order of decreasing diag(H)
};

// Accumulates H = sum x x^T over the rows of layer inputs (double precision).
class Hessian {
 public:
  explicit Hessian(int64_t n) : n_(n), h_((size_t)n * n, 0.0) {}
  void add(const float* x, int64_t rows);
  int64_t n() const { return n_; }
  int64_t samples() const { return count_; }
  const std::vector<double>& data() const { return h_; }
  void release() { std::vector<double>().swap(h_); }  // once factored: frees the n^2 doubles
  // The n^2 sums themselves, moved out (the Hessian is released): gptq_factor(Hessian&&) turns
  // them into U in place instead of holding a copy next to them.
  std::vector<double> take() { return std::move(h_); }

 private:
  int64_t n_, count_ = 0;
  std::vector<double> h_;
};

// What GPTQ needs of a Hessian, shared by every linear that reads the same input (q/k/v,
// gate/up): the column order, the dead inputs, and U, the upper Cholesky factor of the dampened
// H^-1 (in the column order).
struct GptqFactor {
  int64_t n = 0;
  std::vector<int64_t> perm;  // quantization order: column perm[i] of W is the i-th quantized
  std::vector<char> dead;     // [n] by original column: never active (H_jj = 0), weights zeroed
  std::vector<double> U;      // [n, n] row-major
};
// Fails naming --percdamp when the dampened Hessian is not positive definite.
GptqFactor gptq_factor(const Hessian& h, const GptqOptions& opt);
// The same, factored in the Hessian's own storage (released): one n x n buffer, not two.
GptqFactor gptq_factor(Hessian&& h, const GptqOptions& opt);

// Quantizes l.w in place (fake-quantized values). Per-row quantizer params are found on the
// full rows (or per group as columns are reached, for grouped specs), as GPTQ does.
void gptq_quantize(Linear& l, const GptqFactor& f, const QuantSpec& ws, const GptqOptions& opt);
// gptq_factor + gptq_quantize for one linear.
void gptq_quantize(Linear& l, const Hessian& h, const QuantSpec& ws, const GptqOptions& opt);

// Round-to-nearest baseline for the same spec.
void rtn_quantize(Linear& l, const QuantSpec& ws);

}  // namespace kt
