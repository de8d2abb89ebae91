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
  // The arithmetic of the Hessian's sums, its factor U and the working weights: float, as the
  // reference implementations (GPTQ's, QuaRot's) keep them, or double, which doubles GPTQ's
  // memory beside the layer (a 7B down_proj: H/U 462 -> 924 MiB, the working copy of W 172 ->
  // 344 MiB). The pipeline makes its Hessians in this precision; a factor and the quantization
  // follow the Hessian's.
  bool f64 = false;
};

// Accumulates H = sum x x^T over the rows of layer inputs, in double (f64) or float.
class Hessian {
 public:
  Hessian(int64_t n, bool f64) : n_(n), f64_(f64) {
    if (f64) h_.assign((size_t)n * n, 0.0);
    else h32_.assign((size_t)n * n, 0.0f);
  }
  void add(const float* x, int64_t rows);
  int64_t n() const { return n_; }
  int64_t samples() const { return count_; }
  bool f64() const { return f64_; }
  // The sums in the Hessian's precision (the other is empty).
  const std::vector<double>& data() const { return h_; }
  const std::vector<float>& data32() const { return h32_; }
  // once factored: frees the n^2 sums
  void release() {
    std::vector<double>().swap(h_);
    std::vector<float>().swap(h32_);
  }
  // The n^2 sums themselves, moved out (the Hessian is released): gptq_factor(Hessian&&) turns
  // them into U in place instead of holding a copy next to them.
  std::vector<double> take() { return std::move(h_); }
  std::vector<float> take32() { return std::move(h32_); }

 private:
  int64_t n_, count_ = 0;
  bool f64_;
  std::vector<double> h_;
  std::vector<float> h32_;
};

// What GPTQ needs of a Hessian, shared by every linear that reads the same input (q/k/v,
// gate/up): the column order, the dead inputs, and U, the upper Cholesky factor of the dampened
// H^-1 (in the column order), in the Hessian's precision.
struct GptqFactor {
  int64_t n = 0;
  std::vector<int64_t> perm;  // quantization order: column perm[i] of W is the i-th quantized
  std::vector<char> dead;     // [n] by original column: never active (H_jj = 0), weights zeroed
  std::vector<double> U;      // [n, n] row-major (a double Hessian's)
  std::vector<float> U32;     // the same, of a float Hessian
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
