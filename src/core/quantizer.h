// One quantizer description used for weights, activations and the KV cache, and its scalar
// reference implementation (fake quantization: quantize, then dequantize in fp32).
#pragma once
#include <cstdint>
#include <string>

namespace kt {

enum class Granularity {
  PerTensor,   // one scale for the whole matrix
  PerRow,      // one scale per row: per output channel for W [out,in], per token for X [tokens,ch]
  PerGroup,    // one scale per `group` consecutive columns of each row (KV: group = head_dim)
};

struct QuantSpec {
  int bits = 16;  // >= 16 means "not quantized"
  bool symmetric = true;
  Granularity gran = Granularity::PerRow;
  int group = 0;           // PerGroup only
  float clip_ratio = 1.0f; // scale from clip_ratio * range (QuaRot: A 0.9, KV 0.95)
  bool mse_search = false; // per-row/group grid search of the clip ratio (QuaRot w_clip)
  int mse_grid = 100;
  float mse_maxshrink = 0.8f;  // ratios 1.0 down to 1 - maxshrink
  float mse_norm = 2.4f;
  bool scale_f16 = false;  // scales rounded to fp16 (stored as F16 by --packed: 16 bits per group)

  bool enabled() const { return bits < 16; }
  // Symmetric: levels -2^(b-1) .. 2^(b-1)-1 with scale = clip*absmax / (2^(b-1)-1).
  // Asymmetric: levels 0 .. 2^b-1, scale = clip*(max-min)/(2^b-1), zero = round(-clip*min/scale).
  int qmax() const { return symmetric ? (1 << (bits - 1)) - 1 : (1 << bits) - 1; }
  int qmin() const { return symmetric ? -(1 << (bits - 1)) : 0; }
  std::string describe() const;
};

// Parameters of one quantization group.
struct QParams {
  float scale = 1.0f;
  float zero = 0.0f;  // asymmetric zero point (an integer value stored as float)
};

// Scale/zero for values in [lo, hi] with the range shrunk by `ratio` (the clip).
QParams params_from_range(float lo, float hi, const QuantSpec& s, float ratio);
// Finds scale/zero for the n values in x (already clipped by clip_ratio or searched).
QParams find_params_ref(const float* x, int64_t n, const QuantSpec& s);
// Quantizes one value to its integer level.
inline int quantize_level(float x, const QParams& p, const QuantSpec& s) {
  float q = __builtin_nearbyintf(x / p.scale) + p.zero;
  if (q != q) q = p.zero == p.zero ? p.zero : 0.0f;  // NaN input, scale or zero: casting NaN is UB
  if (q < s.qmin()) q = (float)s.qmin();
  if (q > s.qmax()) q = (float)s.qmax();
  return (int)q;
}
inline float dequantize_level(int q, const QParams& p) { return ((float)q - p.zero) * p.scale; }

// Fake-quantizes a row-major [rows, cols] matrix in place following s (granularity, clip, MSE).
void fake_quant_ref(float* x, int64_t rows, int64_t cols, const QuantSpec& s);
// CrossQuant (arXiv 2410.07505, formula reconstructed from the abstract: UNVERIFIED):
// element scale = t_i^alpha * c_j^(1-alpha) / qmax with t_i = clip * max_j |x_ij| (this row)
// and c_j = the calibration absmax of column j; symmetric levels. alpha = 1 is per-token.
// (Deployment folds c^(1-alpha) into W's input columns so the GEMM keeps a per-row scale.)
void crossquant_fake_quant_ref(float* x, int64_t rows, int64_t cols, const float* colmax, double alpha,
                               const QuantSpec& s);
double crossquant_zero_share_ref(const float* x, int64_t rows, int64_t cols, const float* colmax, double alpha,
                                 const QuantSpec& s);
// Share of elements whose integer level is the zero point (the "quantization kernel").
double zero_share_ref(const float* x, int64_t rows, int64_t cols, const QuantSpec& s);

}  // namespace kt
