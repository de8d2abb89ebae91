#include "quant/pipeline.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <deque>
#include <filesystem>
#include <set>
#include <random>

#include "io/gguf_model.h"
#include "quant/methods.h"
#include "quant/online_plan.h"
#include "io/safetensors.h"
#include "quant/validate_model.h"
#include "kernels/packed.h"
#include "transform/fuse.h"
#include "transform/duquant.h"
#include "transform/kurtail.h"
#include "transform/smooth.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/file.h"
#include "util/output.h"
#include "util/progress.h"

namespace kt {


Windows calibration_windows(const Tokenizer& tok, const std::string& path, int nsamples, int seqlen, uint64_t seed) {
  auto toks = tokenize_file(tok, path);
  if ((int64_t)toks.size() <= seqlen)
    fail(path, "calibration text has " + std::to_string(toks.size()) + " tokens, fewer than one window of " +
                   std::to_string(seqlen));
  if (nsamples <= 0) fail("--nsamples must be positive");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> pick(0, (int64_t)toks.size() - seqlen - 1);
  Windows w;
  w.ctx = seqlen;
  for (int i = 0; i < nsamples; i++) {
    int64_t s = pick(rng);
    w.tokens.insert(w.tokens.end(), toks.begin() + s, toks.begin() + s + seqlen);
  }
  return w;
}

namespace {

// Wraps the recipe's online rotations and records the Hessian of one site.
class CaptureHooks : public Hooks {
 public:
  CaptureHooks(Hooks* inner, Site site, Hessian* h) : inner_(inner), site_(site), h_(h) {}
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    if (inner_) inner_->on_activation(layer, site, x, rows, cols);
    if (site == site_) h_->add(x, rows);
  }

 private:
  Hooks* inner_;
  Site site_;
  Hessian* h_;
};

// Per-channel absmax (and optionally the first `sample_rows` rows) of the linear-input
// sites of one layer, captured before any online transform of that layer.
class SiteStatsCapture : public Hooks {
 public:
  SiteStatsCapture(Hooks* inner, int layer, int sample_rows) : inner_(inner), layer_(layer), sample_rows_(sample_rows) {}
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    if (layer == layer_ && (site == Site::AttnIn || site == Site::OIn || site == Site::MlpIn || site == Site::DownIn)) {
      auto& am = absmax[(int)site];
      if (am.empty()) am.assign(cols, 0.0);
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) am[c] = std::max(am[c], (double)std::fabs(x[r * cols + c]));
      auto& sm = sample[(int)site];
      int64_t have = (int64_t)sm.size() / cols, take = std::min<int64_t>(rows, sample_rows_ - have);
      if (take > 0) sm.insert(sm.end(), x, x + take * cols);
    }
    if (inner_) inner_->on_activation(layer, site, x, rows, cols);
  }
  std::vector<double> absmax[kNumSites];
  std::vector<float> sample[kNumSites];

 private:
  Hooks* inner_;
  int layer_, sample_rows_;
};

// Runs calibration activations x [n*ctx, d] through one layer in chunks of windows.
void run_layer(const ModelSpec& s, const LayerWeights& w, int layer, std::vector<float>& x, int nwin, int ctx,
               Hooks* hooks, bool keep_output) {
  const int chunk = 8;
  std::vector<float> tmp;
  for (int b0 = 0; b0 < nwin; b0 += chunk) {
    int nb = std::min(chunk, nwin - b0);
    float* xp = x.data() + (int64_t)b0 * ctx * s.hidden;
    if (keep_output) {
      decoder_layer(s, w, layer, xp, nb, ctx, 0, nullptr, hooks);
    } else {
      tmp.assign(xp, xp + (int64_t)nb * ctx * s.hidden);
      decoder_layer(s, w, layer, tmp.data(), nb, ctx, 0, nullptr, hooks);
    }
  }
}

}  // namespace

QuantizeReport quantize_model(Model& m, QuantizeOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  Recipe& r = opt.recipe;
  const ModelSpec& s = m.spec;
  QuantizeReport rep;
  // An HF-valid output needs rotate_half RoPE; converting is exact.
  convert_rope_to_rotate_half(m);

  const bool rotate = r.r1 || r.r2 || r.r4;
  const bool gptq = r.weight_algo == "gptq" && r.w.enabled();
  const bool kurtail = r.method == "kurtail";
  const bool smoothquant = r.method == "smoothquant";
  const bool smoothrot = r.method == "smoothrot" || r.method == "smoothrot-all";
  const bool duquant = r.method == "duquant";
  const bool crossquant = r.method == "crossquant";
  const MethodInfo* info = find_method(r.method);
  if (!info) fail("unknown method " + quote(r.method) + " (available: " + method_names() + ")");
  const bool need_stats = info->layer_stats;  // per-layer channel statistics
  const bool need_stream = gptq || need_stats;  // calibration activations flow through the layers
  Rotation r1, r2, r4;
  std::vector<Rotation> r2_layers;  // KurTail: one learned R2 per layer
  if (r.r1) {
    r1 = Rotation::hadamard(s.hidden, r.r1_random_signs, r.seed);
    rep.r1_kind = r1.kind();
  }
  if (r.r2) {
    r2 = Rotation::hadamard(s.head_dim, true, r.seed + 1);
    rep.r2_kind = r2.kind();
  }
  Windows calib;
  if (gptq || kurtail || need_stats) {
    if (opt.calib_path.empty()) fail((gptq ? std::string("GPTQ") : r.method) + " needs calibration text (--calib FILE)");
    int seqlen = opt.seqlen > 0 ? opt.seqlen : std::min(2048, s.max_pos);
    if (seqlen > s.max_pos)
      fail("--seqlen " + std::to_string(seqlen) + " exceeds the model's maximum context of " + std::to_string(s.max_pos));
    calib = calibration_windows(*m.tokenizer, opt.calib_path, opt.nsamples, seqlen, opt.seed);
    r.calib = opt.calib_path;
    r.nsamples = calib.n();
    r.seqlen = seqlen;
    rep.nsamples = calib.n();
    rep.seqlen = seqlen;
  }
  if (kurtail) {
    // One streamed FP pass captures every layer's rows; R1 is then learned from all layers'
    // q/k/v and gate/up inputs together, R2 per layer from its V heads.
    auto tk = std::chrono::steady_clock::now();
    const KurtailSettings& ks = r.kurtail;
    KurtailCapture cap = capture_for_kurtail(m, calib, ks.budget, opt.seed + 7, opt.progress);
    rep.kt_capture_seconds = seconds_since(tk);
    KurtosisObjective obj{ks.target, ks.squared};
    CayleyOptions co;
    co.iters = ks.iters;
    co.lr = ks.lr;
    co.momentum = ks.momentum;
    co.progress = opt.progress;
    if (r.r1 && ks.learn_r1) {
      std::vector<float> X;
      for (int l = 0; l < s.n_layers; l++) {
        X.insert(X.end(), cap.attn_in[l].begin(), cap.attn_in[l].end());
        X.insert(X.end(), cap.mlp_in[l].begin(), cap.mlp_in[l].end());
      }
      int64_t rows = (int64_t)X.size() / s.hidden;
      co.label = "kurtail R1";
      LearnedRotation lr1 = learn_rotation(X, rows, s.hidden, r1.matrix(), obj, co);
      r1 = Rotation::from_matrix(lr1.r);
      rep.r1_kind = "kurtail";
      rep.kt_r1_kurt_init = lr1.kurt_before;
      rep.kt_r1_kurt_final = lr1.kurt_after;
      rep.kt_r1_steps = lr1.steps;
      rep.kt_rows_r1 = rows;
    }
    if (r.r2 && ks.learn_r2) {
      co.progress = false;
      for (int l = 0; l < s.n_layers; l++) {
        const auto& X = cap.v_heads[l];
        int64_t rows = (int64_t)X.size() / s.head_dim;
        LearnedRotation lr2 = learn_rotation(X, rows, s.head_dim, Rotation::hadamard(s.head_dim, true, r.seed + 1 + l).matrix(), obj, co);
        r2_layers.push_back(Rotation::from_matrix(lr2.r));
        rep.kt_r2_kurt_init += lr2.kurt_before / s.n_layers;
        rep.kt_r2_kurt_final += lr2.kurt_after / s.n_layers;
      }
      rep.r2_kind = "kurtail";
    }
    rep.kt_seconds = seconds_since(tk);
  }
  if (r.r3) {
    r.r3_seed = r.seed + 3;
    r.r3_kind = Rotation::hadamard(s.head_dim, false, r.r3_seed).kind();
    rep.r3_kind = r.r3_kind;
  }
  if (r.r4) {
    r.r4_seed = r.seed + 4;
    r4 = Rotation::hadamard(s.ffn, false, r.r4_seed);
    r.r4_kind = r4.kind();
    rep.r4_kind = r.r4_kind;
  }
  if (rotate || r.r3) {
    fold_final_norm(m);
    if (r.r1) rotate_residual_globals(m, r1);
  }
  if (r.quant_lm_head && r.w.enabled()) {
    m.untie_lm_head();
    Linear head;
    head.w = m.lm_head;
    rtn_quantize(head, r.w);
    m.lm_head = head.w;
  }

  r.crossquant = crossquant;
  std::vector<float> x;
  if (need_stream) {
    x.resize((size_t)calib.tokens.size() * s.hidden);
    embed_tokens(m, calib.tokens.data(), (int64_t)calib.tokens.size(), x.data());
  }
  Rotation rin;
  if (r.online_had_inputs) rin = Rotation::hadamard(s.hidden, false, r.seed + 5);
  OnlinePlanBuilder online(r, s);  // transforms only: calibration activations stay fp32
  const Site stat_sites[] = {Site::AttnIn, Site::OIn, Site::MlpIn, Site::DownIn};

  Progress prog("quantize layers", s.n_layers, opt.progress);
  for (int l = 0; l < s.n_layers; l++) {
    LayerWeights w = *m.layer(l);
    // A --packed model given as input (e.g. `bench --model OUT`): transforms need fp32 weights.
    for (Linear* lin : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down})
      if (lin->packed && lin->w.data.empty()) {
        lin->w.data = dequantize_packed(*lin->packed);
        lin->packed.reset();
      }
    if (r.r1 || r.r3 || r.r2 || r.r4 || duquant) fold_layer_norms(w);
    if (r.r1) rotate_residual_layer(w, r1);
    if (r.r2) rotate_value_heads(w, s, r2_layers.empty() ? r2 : r2_layers[l]);
    if (need_stats) {
      // Channel statistics of this layer's linear inputs, before any of its own transforms.
      SiteStatsCapture st(nullptr, l, duquant ? 512 : 0);
      run_layer(s, w, l, x, calib.n(), calib.ctx, &st, /*keep_output=*/false);
      if (smoothquant || r.method == "smoothrot-all") {
        auto sa = smooth_scales(st.absmax[(int)Site::AttnIn], {&w.q, &w.k, &w.v}, r.smooth_alpha);
        smooth_into_norm(w.attn_norm, {&w.q, &w.k, &w.v}, sa);
        auto sm = smooth_scales(st.absmax[(int)Site::MlpIn], {&w.gate, &w.up}, r.smooth_alpha);
        smooth_into_norm(w.mlp_norm, {&w.gate, &w.up}, sm);
      }
      if (smoothquant || smoothrot) {
        auto sd = smooth_scales(st.absmax[(int)Site::DownIn], {&w.down}, r.smooth_alpha);
        smooth_down_via_up(w, sd);
      }
      if (duquant) {
        DuQuantOptions dq{r.dq_alpha, r.dq_block, r.dq_steps, r.dq_permute};
        for (Site site : stat_sites) {
          std::vector<Linear*> cons = site == Site::AttnIn ? std::vector<Linear*>{&w.q, &w.k, &w.v}
                                      : site == Site::OIn  ? std::vector<Linear*>{&w.o}
                                      : site == Site::MlpIn ? std::vector<Linear*>{&w.gate, &w.up}
                                                            : std::vector<Linear*>{&w.down};
          const int n = (int)cons[0]->in();
          const auto& X = st.sample[(int)site];
          SiteTransform t = build_duquant(X, (int64_t)X.size() / n, n, st.absmax[(int)site],
                                          std::vector<const Linear*>(cons.begin(), cons.end()), dq);
          for (Linear* c : cons) t.apply_to_weight(*c);
          if (!t.smooth.empty()) r.tensors[site_tensor_name("site", l, site, "smooth")] = Tensor::from(t.smooth);
          if (!t.rot_a.empty()) r.tensors[site_tensor_name("site", l, site, "rot_a")] = t.rot_a;
          if (!t.rot_b.empty()) r.tensors[site_tensor_name("site", l, site, "rot_b")] = t.rot_b;
          if (!t.perm.empty())
            r.tensors[site_tensor_name("site", l, site, "perm")] =
                Tensor::from(std::vector<float>(t.perm.begin(), t.perm.end()));
          online.set_site_transform(l, site, std::move(t));
        }
      }
      if (crossquant) {
        for (Site site : stat_sites) {
          std::vector<float> c(st.absmax[(int)site].begin(), st.absmax[(int)site].end());
          r.tensors[site_tensor_name("cq", l, site, "colmax")] = Tensor::from(c);
          online.set_crossquant_colmax(l, site, std::move(c));
        }
      }
    }
    if (r.online_had_inputs)
      for (Linear* lin : {&w.q, &w.k, &w.v, &w.gate, &w.up}) rotate_input_side(*lin, rin);
    if (r.r4) fuse_down_input(w, r4);
    if (!gptq) {
      for (Linear* lin : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down}) rtn_quantize(*lin, r.w);
    } else {
      // true-sequential GPTQ: each group sees the outputs of the already-quantized groups
      struct Group {
        Site site;
        std::vector<Linear*> lins;
      };
      std::vector<Group> groups = {{Site::AttnIn, {&w.q, &w.k, &w.v}},
                                   {Site::OIn, {&w.o}},
                                   {Site::MlpIn, {&w.gate, &w.up}},
                                   {Site::DownIn, {&w.down}}};
      for (auto& g : groups) {
        Hessian h(g.lins[0]->in());
        CaptureHooks cap(&online, g.site, &h);
        run_layer(s, w, l, x, calib.n(), calib.ctx, &cap, /*keep_output=*/false);
        for (Linear* lin : g.lins) gptq_quantize(*lin, h, r.w, opt.gptq);
      }
    }
    if (need_stream) run_layer(s, w, l, x, calib.n(), calib.ctx, &online, /*keep_output=*/true);
    m.set_layer(l, std::move(w));
    prog.update(l + 1, need_stream ? (int64_t)(l + 1) * calib.tokens.size() : 0,
                "peak RSS " + std::to_string((int)peak_rss_mib()) + " MiB");
  }
  prog.finish();
  rep.seconds = seconds_since(t0);
  rep.peak_rss_mib = peak_rss_mib();
  return rep;
}

}  // namespace kt
