#include "core/quantizer.h"

#include "core/mse_clip.h"
#include "core/tensor.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace kt {

std::string QuantSpec::describe() const {
  if (!enabled()) return "fp";
  std::string g = gran == Granularity::PerTensor ? "tensor" : gran == Granularity::PerRow ? "row" : "g" + std::to_string(group);
  std::string r = "int" + std::to_string(bits) + (symmetric ? " sym" : " asym") + " per-" + g;
  char buf[64];
  if (clip_ratio != 1.0f) {
    std::snprintf(buf, sizeof buf, " clip %.2f", clip_ratio);
    r += buf;
  }
  if (mse_search) r += " mse-clip";
  if (scale_f16) r += " f16-scales";
  return r;
}

namespace {

// Nearest fp16 value, kept positive and finite (a scale must not round to 0 or Inf).
float fp16_scale(float v) {
  float r = f16_to_f32(f32_to_f16(std::min(v, 65504.0f)));
  return r > 0 ? r : 5.9604645e-8f;  // smallest fp16 subnormal
}

void minmax(const float* x, int64_t n, float* lo, float* hi) {
  float a = x[0], b = x[0];
  for (int64_t i = 1; i < n; i++) {
    a = std::min(a, x[i]);
    b = std::max(b, x[i]);
  }
  *lo = a;
  *hi = b;
}

}  // namespace

QParams params_from_range(float lo, float hi, const QuantSpec& s, float ratio) {
  QParams p;
  if (s.symmetric) {
    float amax = std::max(std::fabs(lo), std::fabs(hi)) * ratio;
    p.scale = amax > 0 ? amax / s.qmax() : 1.0f;
    // amax below qmax * 2^-149 underflows to 0; a scale is never 0 (the loader refuses 0,
    // and x / 0 has no level), so keep the smallest one: such a group quantizes to 0 anyway.
    if (!(p.scale > 0)) p.scale = std::numeric_limits<float>::denorm_min();
    if (s.scale_f16) p.scale = fp16_scale(p.scale);
    p.zero = 0;
  } else {
    lo = std::min(lo, 0.0f) * ratio;  // the range always contains 0 (as GPTQ/QuaRot do)
    hi = std::max(hi, 0.0f) * ratio;
    float range = hi - lo;
    p.scale = range > 0 ? range / s.qmax() : 1.0f;
    if (s.scale_f16) p.scale = fp16_scale(p.scale);
    p.zero = range > 0 ? __builtin_nearbyintf(-lo / p.scale) : 0.0f;
  }
  return p;
}

QParams find_params_ref(const float* x, int64_t n, const QuantSpec& s) {
  if (n == 0) return {};
  float lo, hi;
  minmax(x, n, &lo, &hi);
  QParams best = params_from_range(lo, hi, s, s.clip_ratio);
  if (!s.mse_search) return best;
  return mse_clip_search(x, n, s, lo, hi);
}

void fake_quant_ref(float* x, int64_t rows, int64_t cols, const QuantSpec& s) {
  if (!s.enabled() || rows == 0 || cols == 0) return;
  auto apply = [&](float* p, int64_t n, const QParams& qp) {
    for (int64_t k = 0; k < n; k++) p[k] = dequantize_level(quantize_level(p[k], qp, s), qp);
  };
  if (s.gran == Granularity::PerTensor) {
    QParams qp = find_params_ref(x, rows * cols, s);
    apply(x, rows * cols, qp);
    return;
  }
  const int64_t g = s.gran == Granularity::PerGroup && s.group > 0 ? s.group : cols;
#pragma omp parallel for if (rows * cols > 65536)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
      float* p = x + r * cols + c0;
      int64_t n = std::min(g, cols - c0);
      apply(p, n, find_params_ref(p, n, s));
    }
}

double zero_share_ref(const float* x, int64_t rows, int64_t cols, const QuantSpec& s) {
  if (!s.enabled() || rows * cols == 0) return 0;
  const int64_t g = s.gran == Granularity::PerGroup && s.group > 0 ? s.group : cols;
  int64_t zeros = 0;
  if (s.gran == Granularity::PerTensor) {
    QParams qp = find_params_ref(x, rows * cols, s);
    for (int64_t i = 0; i < rows * cols; i++) zeros += quantize_level(x[i], qp, s) == (int)qp.zero;
    return (double)zeros / (rows * cols);
  }
#pragma omp parallel for reduction(+ : zeros)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
      const float* p = x + r * cols + c0;
      int64_t n = std::min(g, cols - c0);
      QParams qp = find_params_ref(p, n, s);
      for (int64_t k = 0; k < n; k++) zeros += quantize_level(p[k], qp, s) == (int)qp.zero;
    }
  return (double)zeros / (rows * cols);
}

}  // namespace kt

namespace kt {

namespace {
template <class F>
void crossquant_core(const float* x, int64_t rows, int64_t cols, const float* colmax, double alpha, const QuantSpec& s,
                     F&& each) {
  const float qmax = (float)s.qmax();
  std::vector<float> cpow(cols);
  for (int64_t j = 0; j < cols; j++) cpow[j] = (float)std::pow(std::max(1e-12, (double)colmax[j]), 1 - alpha);
  for (int64_t r = 0; r < rows; r++) {
    const float* p = x + r * cols;
    float t = 0;
    for (int64_t j = 0; j < cols; j++) t = std::max(t, std::fabs(p[j]));
    t *= s.clip_ratio;
    const float tp = (float)std::pow(std::max(1e-12, (double)t), alpha);
    for (int64_t j = 0; j < cols; j++) {
      QParams qp;
      qp.scale = t > 0 ? tp * cpow[j] / qmax : 1.0f;
      qp.zero = 0;
      each(r * cols + j, qp);
    }
  }
}
}  // namespace

void crossquant_fake_quant_ref(float* x, int64_t rows, int64_t cols, const float* colmax, double alpha,
                               const QuantSpec& s) {
  if (!s.enabled()) return;
  crossquant_core(x, rows, cols, colmax, alpha, s,
                  [&](int64_t i, const QParams& qp) { x[i] = dequantize_level(quantize_level(x[i], qp, s), qp); });
}

double crossquant_zero_share_ref(const float* x, int64_t rows, int64_t cols, const float* colmax, double alpha,
                                 const QuantSpec& s) {
  if (!s.enabled() || rows * cols == 0) return 0;
  int64_t z = 0;
  crossquant_core(x, rows, cols, colmax, alpha, s, [&](int64_t i, const QParams& qp) { z += quantize_level(x[i], qp, s) == 0; });
  return (double)z / (rows * cols);
}

}  // namespace kt
