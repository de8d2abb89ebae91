#include "transform/smooth.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace kt {

std::vector<float> smooth_scales(const std::vector<double>& act_absmax, const std::vector<const Linear*>& ws,
                                 double alpha) {
  const size_t n = act_absmax.size();
  std::vector<double> wmax(n, 0.0);
  for (const Linear* l : ws) {
    if ((size_t)l->in() != n) fail("smoothing: activation and weight sizes differ");
    for (int64_t i = 0; i < l->out(); i++)
      for (size_t j = 0; j < n; j++) wmax[j] = std::max(wmax[j], (double)std::fabs(l->w.data[i * n + j]));
  }
  std::vector<float> s(n, 1.0f);
  for (size_t j = 0; j < n; j++) {
    if (act_absmax[j] <= 0 || wmax[j] <= 0) continue;
    double v = std::pow(act_absmax[j], alpha) / std::pow(wmax[j], 1 - alpha);
    s[j] = (float)std::clamp(v, 1e-5, 1e5);
  }
  return s;
}

void smooth_into_norm(Tensor& norm_w, const std::vector<Linear*>& ws, const std::vector<float>& s) {
  const size_t n = s.size();
  for (size_t j = 0; j < n; j++) norm_w.data[j] /= s[j];
  for (Linear* l : ws)
    for (int64_t i = 0; i < l->out(); i++)
      for (size_t j = 0; j < n; j++) l->w.data[i * n + j] *= s[j];
}

void smooth_down_via_up(LayerWeights& w, const std::vector<float>& s) {
  const int64_t f = (int64_t)s.size(), in = w.up.in();
  for (int64_t i = 0; i < f; i++) {
    for (int64_t j = 0; j < in; j++) w.up.w.data[i * in + j] /= s[i];
    if (!w.up.b.empty()) w.up.b.data[i] /= s[i];
  }
  for (int64_t i = 0; i < w.down.out(); i++)
    for (int64_t j = 0; j < f; j++) w.down.w.data[i * f + j] *= s[j];
}

}  // namespace kt
