#include "quant/pipeline.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cmath>
#include <deque>
#include <filesystem>
#include <functional>
#include <set>
#include <random>

#include "io/gguf_model.h"
#include "quant/methods.h"
#include "quant/online_plan.h"
#include "io/safetensors.h"
#include "quant/validate_model.h"
#include "kernels/packed.h"
#include "model/pack_linear.h"
#include "quant/method.h"
#include "transform/fuse.h"
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

// Wraps the recipe's online rotations and records the Hessians of one site's input: of every
// row (expert -1), or (MoE) of each expert's rows at that site, the tokens routed to it.
class CaptureHooks : public Hooks {
 public:
  // experts[i] is the expert whose Hessian is h[i] (-1: the whole site)
  CaptureHooks(Hooks* inner, Site site, const std::vector<int>& experts, std::vector<Hessian>& h)
      : inner_(inner), site_(site), experts_(experts), h_(h), rows_(experts.size(), 0) {}
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    if (inner_) inner_->on_activation(layer, site, x, rows, cols);
    if (site == site_) add(-1, x, rows);
  }
  void on_expert_input(int, int expert, Site site, const float* x, int64_t rows, int64_t) override {
    if (site == site_) add(expert, x, rows);
  }
  int64_t rows(size_t i) const { return rows_[i]; }
  // The capture pass stops at its site (a MoE site's expert inputs come later: never ended there).
  bool pass_ends_at(Site site) const override { return site == site_; }

 private:
  void add(int expert, const float* x, int64_t rows) {
    for (size_t i = 0; i < experts_.size(); i++)
      if (experts_[i] == expert) {
        h_[i].add(x, rows);
        rows_[i] += rows;
      }
  }
  Hooks* inner_;
  Site site_;
  const std::vector<int>& experts_;
  std::vector<Hessian>& h_;
  std::vector<int64_t> rows_;
};

// GPTQ of one layer, true-sequential: each site's linears see the outputs of the
// already-quantized ones. An MoE site is split by expert: each expert's linears get the Hessian
// of the calibration tokens routed to it (one pass captures every expert of the site); an expert
// no calibration token reaches has no Hessian and gets RTN (counted in the report). The routing
// linears stay in full precision.
//
// Memory: a site's quantized linears are held packed (their codes and scales) while the later
// sites' passes still run them, dequantized one call at a time (Linear::dequantize_per_call), and
// turned back into fp32 at the end: at a 7B layer's down_proj that is q..up's 620 MiB of fp32
// held as 78 MiB of int4, beside the Hessian (462 MiB in f32). The values are the same floats (w is
// code * scale exactly, checked by pack_linear), so the bits of the result do not change.
void gptq_layer(LayerWeights& w, const Recipe& r, const QuantizeOptions& opt, Hooks& online,
                const std::function<void(const LayerWeights&, Hooks*)>& run, QuantizeReport& rep) {
  std::vector<Linear*> held;  // packed until the layer is done
  for (auto& g : site_consumers(w)) {
    std::vector<int> experts;  // the distinct experts among the site's quantized linears, in order
    for (const auto& c : g.linears)
      if (!c.routing && std::find(experts.begin(), experts.end(), c.expert) == experts.end()) experts.push_back(c.expert);
    if (experts.empty()) continue;
    std::vector<Hessian> h;
    for (size_t i = 0; i < experts.size(); i++) h.emplace_back(g.linears.back().lin->in(), opt.gptq.f64);
    CaptureHooks cap(&online, g.site, experts, h);
    auto t = std::chrono::steady_clock::now();
    run(w, &cap);
    rep.add_step("hessians", seconds_since(t));
    t = std::chrono::steady_clock::now();
    for (size_t i = 0; i < experts.size(); i++) {
      const bool none = experts[i] >= 0 && cap.rows(i) == 0;
      if (none) rep.experts_without_calibration++;
      // one factorisation per Hessian, shared by the linears reading it (q/k/v, gate/up)
      GptqFactor f;
      if (!none && r.w.enabled()) {
        f = gptq_factor(std::move(h[i]), opt.gptq);  // factored in the Hessian's storage
      }
      for (auto& c : g.linears)
        if (!c.routing && c.expert == experts[i]) {
          if (none) rtn_quantize(*c.lin, r.w);
          else gptq_quantize(*c.lin, f, r.w, opt.gptq);
        }
    }
    for (auto& c : g.linears)
      if (!c.routing) {
        Linear& lin = *c.lin;
        lin.packed = pack_linear(lin, "GPTQ", "a quantized linear");  // null: no packed form, stays fp32
        if (!lin.packed) continue;
        std::vector<float>().swap(lin.w.data);
        lin.dequantize_per_call = true;
        held.push_back(&lin);
      }
    rep.add_step("gptq", seconds_since(t));
  }
  for (Linear* lin : held) {
    unpack_linear(*lin);
    lin->dequantize_per_call = false;
  }
}

// Per-channel absmax (and optionally the first `sample_rows` rows) of the linear-input
// sites of one layer, captured before any online transform of that layer.
class SiteStatsCapture : public Hooks {
 public:
  // The linear-input sites are the layer's site_consumers.
  SiteStatsCapture(Hooks* inner, int layer, const LayerWeights& w, int sample_rows, LayerStats& out)
      : inner_(inner), layer_(layer), sample_rows_(sample_rows), out_(out) {
    for (const auto& g : site_consumers(w)) capture_[(int)g.site] = true;
  }
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    if (layer == layer_ && capture_[(int)site]) {
      auto& am = out_.absmax[(int)site];
      if (am.empty()) am.assign(cols, 0.0);
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) am[c] = std::max(am[c], (double)std::fabs(x[r * cols + c]));
      auto& sm = out_.sample[(int)site];
      int64_t have = (int64_t)sm.size() / cols, take = std::min<int64_t>(rows, sample_rows_ - have);
      if (take > 0) sm.insert(sm.end(), x, x + take * cols);
    }
    if (inner_) inner_->on_activation(layer, site, x, rows, cols);
  }

 private:
  Hooks* inner_;
  int layer_, sample_rows_;
  LayerStats& out_;
  bool capture_[kNumSites] = {};
};

}  // namespace

QuantizeReport quantize_model(Model& m, QuantizeOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  Recipe& r = opt.recipe;
  const ModelSpec& s = m.spec;
  QuantizeReport rep;
  // Its R1 would have to be composed with this run's; the recipe written could not say so.
  if (s.n_layers > 0 && m.has_post_norm_r1(0))
    fail(m.path, "re-quantizing a model whose R1 runs online after its post-norms is not supported (quantize the original checkpoint)");
  // An HF-valid output needs rotate_half RoPE; converting is exact.
  convert_rope_to_rotate_half(m);

  const bool rotate = r.r1 || r.r2 || r.r4;
  const bool gptq = r.weight_algo == "gptq" && r.w.enabled();
  const MethodInfo* info = find_method(r.method);
  if (!info) fail("unknown method " + quote(r.method) + " (available: " + method_names() + ")");
  std::unique_ptr<Method> method = info->make();
  const Needs needs = method->needs();
  const bool need_stream = gptq || needs.layer_stats;  // calibration activations flow through the layers
  std::string why;
  if (!method_runs_on(*info, s, &why)) fail(why);
  // Deferred globals (a streamed run) are read by row blocks as they are written; what needs them
  // whole, or a head quantizer that is not per row (one scale for the whole head), loads them.
  if (m.globals_deferred() && (!opt.sink || needs.whole_globals || !head_quant_by_rows(r))) m.load_globals();
  if (s.moe() && r.online_had_inputs)
    fail("online input Hadamards (online_hadamard_inputs) are not supported on mixture-of-experts models yet");
  if (r.r4_block > 0 && !r.r4) fail("--r4-block " + std::to_string(r.r4_block) + " needs R4 (a method with it, without --no-r4)");
  if (r.r4_block > 0)
    for (int n : s.down_widths()) r4_rotation(r, n);  // fails now, naming the sizes, not after calibration
  Rotations rot;
  if (r.r1) {
    rot.r1 = Rotation::hadamard(s.hidden, r.r1_random_signs, r.seed);
    rep.r1_kind = rot.r1.kind();
  }
  if (r.r2) {
    rot.r2 = Rotation::hadamard(s.head_dim, true, r.seed + 1);
    rep.r2_kind = rot.r2.kind();
  }
  Windows calib;
  if (gptq || needs.calibration || needs.layer_stats) {
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
  // R3/R4 from the recipe's seed before prepare: a method that learns through them (SpinQuant)
  // must see the ones the model will run with.
  if (r.r3) {
    r.r3_seed = r.seed + 3;
    rot.r3 = Rotation::hadamard(s.head_dim, false, r.r3_seed);
    r.r3_kind = rot.r3.kind();
    rep.r3_kind = r.r3_kind;
  }
  if (r.r4) {  // one per down_proj input width; the recipe records the first's kind
    r.r4_seed = r.seed + 4;
    for (int n : s.down_widths()) rot.r4.push_back(r4_rotation(r, n));
    r.r4_kind = rot.r4[0].kind();
    rep.r4_kind = r.r4_block > 0 ? r.r4_kind + "-block-" + std::to_string(r.r4_block) : r.r4_kind;  // report only
  }
  r.crossquant = false;  // the method's to set (CrossQuant's prepare)
  MethodContext ctx{r, s, opt, rep};
  const double cpu0 = process_cpu_seconds();
  auto tstep = std::chrono::steady_clock::now();
  // wall seconds since the last lap, added to step `name`
  auto lap = [&](const char* name) {
    const auto now = std::chrono::steady_clock::now();
    rep.add_step(name, std::chrono::duration<double>(now - tstep).count());
    tstep = now;
  };
  method->prepare(m, calib, rot, ctx);
  rep.prepare_cpu_seconds = process_cpu_seconds() - cpu0;
  lap("prepare");
  if (r.r1 && arch_table(s).has(Field::PostAttnNorm) && rot.r1.kind() == "dense")
    r.tensors[kOnlineR1Tensor] = rot.r1.matrix();  // a learned R1 runs online: the recipe carries it
  // shared by every layer whose post-norm output it rotates online (Gemma 2); moved, not copied:
  // a dense R1 holds Q and Q^T (128 MiB at hidden 4096), and nothing reads rot.r1 after this
  const auto r1 = r.r1 ? std::make_shared<const Rotation>(std::move(rot.r1)) : nullptr;
  if (rotate || r.r3) {
    fold_final_norm(m);
    if (r.r1) rotate_residual_globals(m, r1);
  }
  if (r.quant_lm_head && r.w.enabled()) {
    m.untie_lm_head();
    // records its scales like the layers' (packable); deferred: by head_block, as it is written
    if (!m.globals_deferred()) rtn_quantize(m.lm_head, r.lm_head_w());
  }

  std::vector<float> x;
  if (need_stream) {
    x.resize((size_t)calib.tokens.size() * s.hidden);
    embed_tokens(m, calib.tokens.data(), (int64_t)calib.tokens.size(), x.data());
  }
  Rotation rin;
  if (r.online_had_inputs) rin = Rotation::hadamard(s.hidden, false, r.seed + 5);
  OnlineBuilder online(r, s);  // transforms only: calibration activations stay fp32
  ctx.online = &online;

  // The calibration windows through one layer, a few at a time (bounded attention and MLP
  // scratch: layer_chunk_windows), all chunks with the same hooks; keep_output false: a
  // statistics pass that leaves x as it is.
  const int chunk = layer_chunk_windows(s, calib.ctx);
  auto run_layer = [&](const LayerWeights& lw, int l, Hooks* h, bool keep_output) {
    for_each_layer_chunk(s, lw, l, x.data(), calib.n(), calib.ctx, chunk, [h](int) { return h; }, keep_output);
  };

  lap("globals");
  if (opt.sink) {  // streaming: the globals are final now; written out and freed
    opt.sink->globals(m, r);
    m.embed = Tensor();
    m.lm_head = Linear();
    lap("write globals");
  }

  Progress prog("quantize layers", s.n_layers, opt.progress);
  for (int l = 0; l < s.n_layers; l++) {
    LayerWeights w = m.take_layer(l);
    // A quantized model given as input: transforms need fp32 weights, and the grid recorded
    // with them (qscale/qbits) stops describing them once they are transformed; this run's
    // weight quantizer records its own (none at W16).
    w.for_each_linear([](LinearId, Linear& lin) {
      unpack_linear(lin);
      lin.packed.reset();  // also when w was stored beside it
      lin.dequantized.reset();
      lin.qscale = Tensor();
      lin.qbits = 0;
    });
    if (r.r1 || r.r3 || r.r2 || r.r4 || needs.fold_norms) fold_layer_norms(w);
    if (r.r1) rotate_residual_layer(w, r1);
    if (r.r2) rotate_value_heads(w, s, rot.r2_layers.empty() ? rot.r2 : rot.r2_layers[l]);
    lap("fuse");
    LayerStats stats;
    if (needs.layer_stats) {
      // Channel statistics of this layer's linear inputs, before any of its own transforms.
      SiteStatsCapture st(nullptr, l, w, needs.sample_rows, stats);
      run_layer(w, l, &st, /*keep_output=*/false);
      lap("stats");
    }
    method->transform_layer(l, w, stats, ctx);
    if (r.online_had_inputs)  // the hidden-size inputs: the linears a norm feeds
      for (auto& g : site_consumers(w))
        if (g.norm)
          for (Linear* lin : g.lins()) rotate_input_side(*lin, rin);
    if (r.r4) fuse_down_input(w, rot.r4);
    lap("fuse");
    if (!gptq) {
      w.for_each_linear([&](LinearId, Linear& lin) { rtn_quantize(lin, r.w); });
      lap("rtn");
    } else {
      gptq_layer(w, r, opt, online, [&](const LayerWeights& lw, Hooks* h) { run_layer(lw, l, h, false); }, rep);
      tstep = std::chrono::steady_clock::now();  // gptq_layer timed its own steps
    }
    if (need_stream) {
      run_layer(w, l, &online, /*keep_output=*/true);
      lap("propagate");
    }
    if (opt.sink) {
      opt.sink->layer(l, w, m, r);
      m.release_layer(l);
      lap("write");
    } else {
      m.set_layer(l, std::move(w));
    }
    prog.update(l + 1, need_stream ? (int64_t)(l + 1) * calib.tokens.size() : 0,
                "peak RSS " + std::to_string((int)peak_rss_mib()) + " MiB");
  }
  prog.finish();
  rep.seconds = seconds_since(t0);
  rep.peak_rss_mib = peak_rss_mib();
  return rep;
}

bool head_quant_by_rows(const Recipe& r) {
  return !(r.quant_lm_head && r.w.enabled()) || r.lm_head_w().gran != Granularity::PerTensor;
}

Linear head_block(const Model& m, const Recipe& r, int64_t row0, int64_t n) {
  Linear l;
  l.w = Tensor({n, (int64_t)m.spec.hidden});
  m.head_rows(row0, n, l.w.ptr());
  if (r.quant_lm_head && r.w.enabled()) {
    if (!head_quant_by_rows(r)) fail("internal: a per-tensor head quantizer applied by blocks of rows");
    rtn_quantize(l, r.lm_head_w());  // per row: the block's rows get the bits the whole head would
  }
  return l;
}

void QuantizeReport::add_step(const std::string& name, double s) {
  const double rss = kt::peak_rss_mib();  // the process-wide reader, not the member
  if (rss > peak_step_rss_mib) peak_step = name, peak_step_rss_mib = rss;
  for (auto& [n, v] : step_seconds)
    if (n == name) {
      v += s;
      return;
    }
  step_seconds.emplace_back(name, s);
}

// R4's block size in recipe.json ("r4": {"block": N}) and on the CLI (--r4-block), declared once
// (quant/options.h). Power of two and divisibility are checked against the model (above, and
// validate_quantized_model when a recipe loads): they need its down_proj widths.
namespace {
void visit_r4(Recipe& r, OptionVisitor& v) {
  v.integer(r.r4_block, 0,
            {"block", "--r4-block",
             "R4 as a block-diagonal Sylvester Hadamard of this size (a power of two dividing the ffn size; vLLM's "
             "fast online Hadamard); 0: the full Hadamard"},
            {0, 1 << 20});
}
}  // namespace
extern const OptionSection kR4Options = {"r4", visit_r4, /*in_every_recipe=*/true};

}  // namespace kt
