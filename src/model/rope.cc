#include "model/rope.h"

#include <algorithm>
#include <cmath>

namespace kt {

namespace {

double yarn_mscale(double scale, double mscale) { return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; }

// Pair index at which a frequency makes `rotations` turns over the original context (YaRN).
double yarn_correction_dim(double rotations, int dim, double base, int max_pos) {
  return dim * std::log(max_pos / (rotations * 2 * M_PI)) / (2 * std::log(base));
}

}  // namespace

RopeFreqs rope_freqs(const ModelSpec& s, int64_t positions) {
  const RopeScaling& r = s.rope_scaling;
  const int dim = s.head_dim, half = dim / 2;
  double base = s.rope_theta;
  RopeFreqs f;
  if (r.type == "dynamic" && positions > s.max_pos)
    base *= std::pow(r.factor * positions / s.max_pos - (r.factor - 1), (double)dim / (dim - 2));
  f.inv_freq.resize(half);
  for (int i = 0; i < half; i++) f.inv_freq[i] = 1.0 / std::pow(base, (2.0 * i) / dim);

  if (r.type == "linear") {
    for (double& x : f.inv_freq) x /= r.factor;
  } else if (r.type == "llama3") {
    const double low_wl = r.original_max_position / r.low_freq_factor;
    const double high_wl = r.original_max_position / r.high_freq_factor;
    for (double& x : f.inv_freq) {
      const double wavelen = 2 * M_PI / x;
      if (wavelen > low_wl) {
        x = x / r.factor;
      } else if (wavelen >= high_wl) {
        const double smooth = (r.original_max_position / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        x = (1 - smooth) * x / r.factor + smooth * x;
      }
    }
  } else if (r.type == "yarn") {
    // Interpolated (/factor) frequencies for the slow pairs, original ones for the fast pairs,
    // a linear ramp between pair indices low..high.
    double low = yarn_correction_dim(r.beta_fast, dim, base, r.original_max_position);
    double high = yarn_correction_dim(r.beta_slow, dim, base, r.original_max_position);
    if (r.truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0);
    high = std::min(high, (double)dim - 1);
    if (low == high) high += 0.001;
    for (int i = 0; i < half; i++) {
      const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
      const double extrapolation = 1 - ramp;
      const double x = f.inv_freq[i];
      f.inv_freq[i] = x / r.factor * (1 - extrapolation) + x * extrapolation;
    }
    f.attention_factor = r.attention_factor > 0                     ? r.attention_factor
                         : (r.mscale > 0 && r.mscale_all_dim > 0) ? yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim)
                                                                   : yarn_mscale(r.factor, 1);
  } else if (r.type == "longrope") {
    // Phi3's longrope_frequency_update: seq_len = max(position_ids) + 1 > original -> long
    const auto& ext = positions > r.original_max_position ? r.long_factor : r.short_factor;
    for (int i = 0; i < half; i++) f.inv_freq[i] /= ext[i];
    f.attention_factor = r.attention_factor > 0 ? r.attention_factor
                         : r.factor <= 1        ? 1.0
                                                : std::sqrt(1 + std::log(r.factor) / std::log((double)r.original_max_position));
  }
  return f;
}

void apply_rope(const ModelSpec& s, float* x, int64_t ntok, int nheads, int pos0, int nseq) {
  const int hd = s.head_dim, half = hd / 2;
  const RopeFreqs fr = rope_freqs(s, pos0 + ntok);
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) inv[i] = (float)fr.inv_freq[i];
  const float att = (float)fr.attention_factor;
  // cos/sin per position, computed as HF does: fp32 angle, then cos/sin (times the attention factor).
  std::vector<float> cs((size_t)ntok * half), sn((size_t)ntok * half);
  for (int64_t t = 0; t < ntok; t++)
    for (int i = 0; i < half; i++) {
      float ang = (float)(pos0 + t) * inv[i];
      cs[t * half + i] = (float)std::cos((double)ang) * att;
      sn[t * half + i] = (float)std::sin((double)ang) * att;
    }
  const int64_t width = (int64_t)nheads * hd;
#pragma omp parallel for collapse(2)
  for (int b = 0; b < nseq; b++)
    for (int64_t t = 0; t < ntok; t++) {
      const float* c = &cs[t * half];
      const float* sv = &sn[t * half];
      for (int h = 0; h < nheads; h++) {
        float* v = x + ((int64_t)b * ntok + t) * width + (int64_t)h * hd;
        if (s.rope_style == RopeStyle::RotateHalf) {
          for (int i = 0; i < half; i++) {
            float a = v[i], bb = v[i + half];
            v[i] = a * c[i] - bb * sv[i];
            v[i + half] = bb * c[i] + a * sv[i];
          }
        } else {
          for (int i = 0; i < half; i++) {
            float a = v[2 * i], bb = v[2 * i + 1];
            v[2 * i] = a * c[i] - bb * sv[i];
            v[2 * i + 1] = a * sv[i] + bb * c[i];
          }
        }
      }
    }
}

}  // namespace kt
