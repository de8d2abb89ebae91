#include "eval/diagnostics.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "transform/kurtail.h"

namespace kt {

namespace {
// std and std/mean of the channel magnitudes sqrt(sumsq[j]).
void magnitude_stats_from_sumsq(const std::vector<double>& sumsq, double* std_out, double* cv_out) {
  double mean = 0, var = 0;
  std::vector<double> mag(sumsq.size());
  for (size_t j = 0; j < sumsq.size(); j++) mean += mag[j] = std::sqrt(sumsq[j]);
  mean /= sumsq.size();
  for (double m : mag) var += (m - mean) * (m - mean);
  *std_out = std::sqrt(var / sumsq.size());
  *cv_out = mean > 0 ? *std_out / mean : 0;
}
}  // namespace

void channel_magnitude_stats(const float* X, int64_t rows, int64_t cols, double* std_out, double* cv_out) {
  std::vector<double> sumsq(cols, 0.0);
  for (int64_t i = 0; i < rows * cols; i++) sumsq[i % cols] += (double)X[i] * X[i];
  magnitude_stats_from_sumsq(sumsq, std_out, cv_out);
}

double mean_channel_kurtosis(const float* X, int64_t rows, int64_t cols) {
  double total = 0;
  int64_t used = 0;
  for (int64_t c = 0; c < cols; c++) {
    double mu = 0;
    for (int64_t r = 0; r < rows; r++) mu += X[r * cols + c];
    mu /= rows;
    double m2 = 0, m4 = 0;
    for (int64_t r = 0; r < rows; r++) {
      double d = X[r * cols + c] - mu, d2 = d * d;
      m2 += d2;
      m4 += d2 * d2;
    }
    m2 /= rows;
    m4 /= rows;
    if (m2 > 0) total += m4 / (m2 * m2), used++;
  }
  return used ? total / used : 0;
}

namespace {

struct Acc {
  int64_t rows = 0, cols = 0;
  double kurt_sum = 0, kurt_max = 0, absmax = 0;
  int64_t zeros = 0;
  std::vector<double> chan_sq, chan_absmax;
  std::vector<float> sample;  // |x| subsample for the median
  int64_t cq_zeros = 0;
  // per-channel raw moments over tokens for the channel kurtosis
  std::vector<double> c1, c2, c3, c4;
  double err = 0;
  int64_t err_rows = 0;
};

// The linear whose weights and error stand for a site in the report: the first consumer of the
// site that is not a router, except K for the attention input (q, k and v read the same input;
// K's error is the one the report has always shown); an expert's down_proj for its DownIn
// group. *name: the HF name's last part ("k_proj").
const Linear* representative(const LayerWeights& w, const ModelSpec& spec, Site s, int expert, std::string* name) {
  for (const auto& g : site_consumers(w)) {
    if (g.site != s || g.expert != expert) continue;
    const std::remove_reference_t<decltype(g.linears.front())>* pick = nullptr;
    for (const auto& c : g.linears)
      if (!c.routing && (!pick || c.field == Field::K)) pick = &c;
    if (!pick) return nullptr;
    const std::string hf = hf_suffix(arch_table(spec).row(pick->field), pick->expert);
    *name = hf.substr(hf.rfind('.') + 1);
    if (pick->expert >= 0 && g.site == Site::DownIn) *name = hf;  // "mlp.experts.3.down_proj"
    return pick->lin;
  }
  return nullptr;
}

class StatsHooks : public Hooks {
 public:
  StatsHooks(Hooks* inner, const Model& m, const QuantSpec& zs, double cq_alpha)
      : acc_(m.spec.n_layers + 1), expert_acc_(m.spec.n_layers), inner_(inner), m_(m), zs_(zs), cq_alpha_(cq_alpha) {
    const int n = m.spec.moe() ? m.spec.n_experts + (m.spec.shared_ffn > 0 ? 1 : 0) : 0;
    for (auto& e : expert_acc_) e.resize((size_t)n);
  }
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    if (inner_) inner_->on_activation(layer, site, x, rows, cols);
    // MoE: each expert's down_proj input is measured per expert (on_expert_input)
    if (m_.spec.moe() && site == Site::DownIn && layer < m_.spec.n_layers) return;
    accumulate(acc_[layer][(int)site], layer, site, -1, x, rows, cols);
  }
  void on_expert_input(int layer, int expert, Site site, const float* x, int64_t rows, int64_t cols) override {
    if (site == Site::DownIn && layer < (int)expert_acc_.size() && expert < (int)expert_acc_[layer].size())
      accumulate(expert_acc_[layer][expert], layer, site, expert, x, rows, cols);
  }

  std::vector<std::array<Acc, kNumSites>> acc_;
  std::vector<std::vector<Acc>> expert_acc_;  // [layer][expert]: MoE down_proj inputs

 private:
  void accumulate(Acc& a, int layer, Site site, int expert, const float* x, int64_t rows, int64_t cols) {
    if (a.chan_sq.empty()) {
      a.chan_sq.assign(cols, 0.0);
      a.chan_absmax.assign(cols, 0.0);
    }
    a.cols = cols;
    if (a.c1.empty()) a.c1 = a.c2 = a.c3 = a.c4 = std::vector<double>(cols, 0.0);
    for (int64_t i = 0; i < rows * cols; i++) {
      double v = x[i], v2 = v * v;
      int64_t c = i % cols;
      a.c1[c] += v;
      a.c2[c] += v2;
      a.c3[c] += v2 * v;
      a.c4[c] += v2 * v2;
    }
    double km, kx;
    row_kurtosis(x, rows, (int)cols, &km, &kx);
    a.kurt_sum += km * rows;
    a.kurt_max = std::max(a.kurt_max, kx);
    a.rows += rows;
    a.zeros += (int64_t)std::llround(zero_share_ref(x, rows, cols, zs_) * rows * cols);
    {
      std::vector<float> cm(cols, 0.0f);
      for (int64_t i = 0; i < rows * cols; i++) cm[i % cols] = std::max(cm[i % cols], std::fabs(x[i]));
      a.cq_zeros += (int64_t)std::llround(crossquant_zero_share_ref(x, rows, cols, cm.data(), cq_alpha_, zs_) * rows * cols);
    }
    if (layer < m_.spec.n_layers) {
      std::string name;
      auto lw = m_.layer(layer);
      const Linear* lin = representative(*lw, m_.spec, site, expert, &name);
      if (lin && !lin->w.data.empty()) {  // (packed-only weights: no fp32 copy to compare against)
        // a subsample of rows: exact output vs 4-bit activations x 4-bit RTN weights
        const int64_t nr = std::min<int64_t>(rows, 64);
        std::vector<float> xs(x, x + nr * cols), xq = xs;
        fake_quant_ref(xq.data(), nr, cols, zs_);
        Linear wq = *lin;
        QuantSpec ws = zs_;
        fake_quant_ref(wq.w.ptr(), wq.out(), wq.in(), ws);
        std::vector<float> y0((size_t)nr * lin->out()), y1(y0.size());
        sgemm_nt(xs.data(), lin->w.ptr(), y0.data(), nr, lin->out(), cols);
        sgemm_nt(xq.data(), wq.w.ptr(), y1.data(), nr, lin->out(), cols);
        for (size_t i = 0; i < y0.size(); i++) a.err += (double)(y0[i] - y1[i]) * (y0[i] - y1[i]);
        a.err_rows += nr;
      }
    }
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


 private:
  Hooks* inner_;
  const Model& m_;
  QuantSpec zs_;
  double cq_alpha_;
};

// The statistics of one accumulated site (nothing when no row reached it).
void finish(Acc& a, const Model& m, int l, Site site, int expert, SiteStats& st) {
  if (a.rows == 0) return;
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
  magnitude_stats_from_sumsq(a.chan_sq, &st.chan_mag_std, &st.chan_mag_cv);
  {  // central 4th / 2nd moments from the raw sums, per channel
    double tot = 0;
    int64_t used = 0;
    const double n = (double)a.rows;
    for (int64_t c = 0; c < a.cols; c++) {
      double mu = a.c1[c] / n, e2 = a.c2[c] / n, e3 = a.c3[c] / n, e4 = a.c4[c] / n;
      double m2 = e2 - mu * mu, m4 = e4 - 4 * mu * e3 + 6 * mu * mu * e2 - 3 * mu * mu * mu * mu;
      if (m2 > 1e-12 * (e2 + 1e-30)) tot += m4 / (m2 * m2), used++;
    }
    st.chan_kurt_mean = used ? tot / used : 0;
  }
  st.chan_absmax = a.chan_absmax;
  st.cq_zero_share = (double)a.cq_zeros / ((double)a.rows * a.cols);
  st.layer_error = a.err_rows ? a.err / a.err_rows : 0;
  if (l < m.spec.n_layers) {
    auto lw = m.layer(l);
    const Linear* lin = representative(*lw, m.spec, site, expert, &st.linear);
    if (lin && !lin->w.data.empty()) {
      double wstd;  // W [out, in]: its columns are the input channels
      channel_magnitude_stats(lin->w.ptr(), lin->out(), lin->in(), &wstd, &st.w_chan_mag_cv);
    }
  }
}

}  // namespace

std::vector<LayerDiagnostics> collect_diagnostics(const Session& sess, const Windows& w,
                                                  const QuantSpec& zero_spec, bool progress, double cq_alpha) {
  const Model& m = sess.model();
  StatsHooks sh(sess.hooks(), m, zero_spec, cq_alpha);
  EvalOptions opt;
  opt.progress = progress;
  run_windows(sess.observed(&sh), w, opt, [](int, const float*) {}, "analyze");
  std::vector<LayerDiagnostics> out(m.spec.n_layers + 1);
  for (size_t l = 0; l < out.size(); l++) {
    for (int s = 0; s < kNumSites; s++) finish(sh.acc_[l][s], m, (int)l, (Site)s, -1, out[l].site[s]);
    if (l < sh.expert_acc_.size())
      for (size_t e = 0; e < sh.expert_acc_[l].size(); e++) {
        out[l].expert_down.emplace_back();
        finish(sh.expert_acc_[l][e], m, (int)l, Site::DownIn, (int)e, out[l].expert_down.back());
      }
  }
  return out;
}

std::string diagnostics_json(const std::vector<LayerDiagnostics>& d, const std::string& label) {
  nlohmann::json layers = nlohmann::json::array();
  for (size_t l = 0; l < d.size(); l++) {
    nlohmann::json sites = nlohmann::json::object();
    auto stats_json = [](const SiteStats& st) {
      return nlohmann::json{{"kurtosis_mean", st.kurt_mean}, {"kurtosis_max", st.kurt_max},
                                   {"channel_kurtosis_mean", st.chan_kurt_mean}, {"absmax", st.absmax}, {"median_abs", st.median_abs},
                                   {"max_over_median", st.max_over_median}, {"zero_share", st.zero_share},
                                   {"channel_magnitude_std", st.chan_mag_std}, {"channel_magnitude_cv", st.chan_mag_cv},
                                   {"rows", st.rows}, {"cols", st.cols}, {"crossquant_zero_share", st.cq_zero_share},
                                   {"weight_channel_magnitude_cv", st.w_chan_mag_cv}, {"layer_error", st.layer_error},
                                   {"linear", st.linear}};
    };
    for (int s = 0; s < kNumSites; s++)
      if (d[l].site[s].seen) sites[site_name((Site)s)] = stats_json(d[l].site[s]);
    nlohmann::json layer = {{"layer", l}, {"sites", sites}};
    if (!d[l].expert_down.empty()) {
      nlohmann::json ex = nlohmann::json::array();
      for (size_t e = 0; e < d[l].expert_down.size(); e++)
        ex.push_back({{"expert", e}, {"down_in", d[l].expert_down[e].seen ? stats_json(d[l].expert_down[e]) : nullptr}});
      layer["experts"] = ex;
    }
    layers.push_back(layer);
  }
  return nlohmann::json{{"label", label}, {"layers", layers}}.dump(2);
}

}  // namespace kt
