#include "eval/diagnostics.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "transform/kurtail.h"

namespace kt {

namespace {

struct Acc {
  int64_t rows = 0, cols = 0;
  double kurt_sum = 0, kurt_max = 0, absmax = 0;
  int64_t zeros = 0;
  std::vector<double> chan_sq, chan_absmax;
  std::vector<float> sample;  // |x| subsample for the median
};

class StatsHooks : public Hooks {
 public:
  StatsHooks(Hooks* inner, int layers, const QuantSpec& zs) : inner_(inner), acc_(layers + 1), zs_(zs) {}
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    if (inner_) inner_->on_activation(layer, site, x, rows, cols);
    Acc& a = acc_[layer][(int)site];
    if (a.chan_sq.empty()) {
      a.chan_sq.assign(cols, 0.0);
      a.chan_absmax.assign(cols, 0.0);
    }
    a.cols = cols;
    double km, kx;
    row_kurtosis(x, rows, (int)cols, &km, &kx);
    a.kurt_sum += km * rows;
    a.kurt_max = std::max(a.kurt_max, kx);
    a.rows += rows;
    a.zeros += (int64_t)std::llround(zero_share_ref(x, rows, cols, zs_) * rows * cols);
    const int64_t stride = std::max<int64_t>(1, rows * cols / 20000);
    for (int64_t i = 0; i < rows * cols; i++) {
      double v = std::fabs(x[i]);
      a.absmax = std::max(a.absmax, v);
      int64_t c = i % cols;
      a.chan_sq[c] += v * v;
      a.chan_absmax[c] = std::max(a.chan_absmax[c], v);
      if (i % stride == 0) a.sample.push_back((float)v);
    }
  }
  std::vector<std::array<Acc, kNumSites>> acc_;

 private:
  Hooks* inner_;
  QuantSpec zs_;
};

}  // namespace

std::vector<LayerDiagnostics> collect_diagnostics(const Model& m, Hooks* online, const Windows& w,
                                                  const QuantSpec& zero_spec, bool progress) {
  StatsHooks sh(online, m.spec.n_layers, zero_spec);
  EvalOptions opt;
  opt.hooks = &sh;
  opt.progress = progress;
  run_windows(m, w, opt, [](int, const float*) {}, "analyze");
  std::vector<LayerDiagnostics> out(m.spec.n_layers + 1);
  for (size_t l = 0; l < out.size(); l++)
    for (int s = 0; s < kNumSites; s++) {
      Acc& a = sh.acc_[l][s];
      SiteStats& st = out[l].site[s];
      if (a.rows == 0) continue;
      st.seen = true;
      st.rows = a.rows;
      st.cols = a.cols;
      st.kurt_mean = a.kurt_sum / a.rows;
      st.kurt_max = a.kurt_max;
      st.absmax = a.absmax;
      std::nth_element(a.sample.begin(), a.sample.begin() + a.sample.size() / 2, a.sample.end());
      st.median_abs = a.sample[a.sample.size() / 2];
      st.max_over_median = st.median_abs > 0 ? st.absmax / st.median_abs : 0;
      st.zero_share = (double)a.zeros / ((double)a.rows * a.cols);
      double mean = 0, var = 0;
      std::vector<double> mags(a.cols);
      for (int64_t c = 0; c < a.cols; c++) mean += mags[c] = std::sqrt(a.chan_sq[c]);
      mean /= a.cols;
      for (double v : mags) var += (v - mean) * (v - mean);
      st.chan_mag_std = std::sqrt(var / a.cols);
      st.chan_mag_cv = mean > 0 ? st.chan_mag_std / mean : 0;
      st.chan_absmax = a.chan_absmax;
    }
  return out;
}

std::string diagnostics_json(const std::vector<LayerDiagnostics>& d, const std::string& label) {
  nlohmann::json layers = nlohmann::json::array();
  for (size_t l = 0; l < d.size(); l++) {
    nlohmann::json sites = nlohmann::json::object();
    for (int s = 0; s < kNumSites; s++) {
      const SiteStats& st = d[l].site[s];
      if (!st.seen) continue;
      sites[site_name((Site)s)] = {{"kurtosis_mean", st.kurt_mean}, {"kurtosis_max", st.kurt_max},
                                   {"absmax", st.absmax}, {"median_abs", st.median_abs},
                                   {"max_over_median", st.max_over_median}, {"zero_share", st.zero_share},
                                   {"channel_magnitude_std", st.chan_mag_std}, {"channel_magnitude_cv", st.chan_mag_cv},
                                   {"rows", st.rows}, {"cols", st.cols}};
    }
    layers.push_back({{"layer", l}, {"sites", sites}});
  }
  return nlohmann::json{{"label", label}, {"layers", layers}}.dump(2);
}

}  // namespace kt
