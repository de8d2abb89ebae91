// kurtail: QuaRot's rotations, with R1 and every layer's R2 learned (Cayley SGD from the
// Hadamards) to minimise the kurtosis of the rows they rotate (transform/kurtail.h has the math).
#include <chrono>

#include "quant/method.h"
#include "quant/pipeline.h"
#include "transform/kurtail.h"
#include "util/progress.h"

namespace kt {

namespace {

void visit_kurtail(Recipe& r, OptionVisitor& v) {
  KurtailSettings& k = r.kurtail;
  v.real(k.target, 1.8, {"target", "--kt-target", "kurtail: target kurtosis (1.8 = uniform; no distribution is below 1)"},
         {1, 1000});
  v.named_bool(k.squared, true, {"squared", "--kt-loss", "kurtail: squared ((k-target)^2) or mean (plain kurtosis)"},
               "squared", "mean");
  v.integer(k.budget, 2048, {"budget", "--kt-tokens", "kurtail: captured token rows per layer and site (0 = all)"},
            {1, kMaxCount, /*zero_default=*/true});
  v.integer(k.iters, 200, {"iters", "--kt-iters", "kurtail: optimiser iterations"}, {0, 1000000});
  // 0.3 and above diverged on tinyllama-8m (docs/RESULTS.md)
  v.real(k.lr, 0.1, {"lr", "--kt-lr", "kurtail: peak learning rate (cosine schedule)"}, {0, 10, /*lo_open=*/true, false, /*load_hi=*/1e6});
  v.real(k.momentum, 0.9, {"momentum", "--kt-momentum", "kurtail: Cayley SGD momentum"},
         {0, 1, false, /*hi_open=*/true});
  v.integer(k.exact_up_to, 1024,
            {"cayley_exact_up_to", "--kt-exact-up-to",
             "kurtail: rotations up to this size take the exact double-precision Cayley step; larger ones the "
             "float step (fixed-point Cayley + Newton-Schulz on the GEMM kernels)"},
            {0, 1 << 20});
  v.flag(k.learn_r1, true, {"learn_r1", nullptr, "learn R1 (false: keep the Hadamard)"});
  v.flag(k.learn_r2, true, {"learn_r2", nullptr, "learn each layer's R2 (false: keep the Hadamards)"});
}

class Kurtail : public Method {
 public:
  Needs needs() const override {
    Needs n;
    n.calibration = true;
    return n;
  }

  // One streamed FP pass captures every layer's rows; R1 is then learned from all layers'
  // q/k/v and gate/up inputs together, R2 per layer from its V heads.
  void prepare(Model& m, const Windows& calib, Rotations& rot, MethodContext& ctx) override {
    const Recipe& r = ctx.recipe;
    const ModelSpec& s = ctx.spec;
    QuantizeReport& rep = ctx.report;
    auto tk = std::chrono::steady_clock::now();
    const KurtailSettings& ks = r.kurtail;
    KurtailCapture cap = capture_for_kurtail(m, calib, ks.budget, ctx.opt.seed + 7, ctx.opt.progress);
    rep.kt_capture_seconds = seconds_since(tk);
    KurtosisObjective obj{ks.target, ks.squared};
    CayleyOptions co;
    co.iters = ks.iters;
    co.lr = ks.lr;
    co.momentum = ks.momentum;
    co.progress = ctx.opt.progress;
    co.exact_up_to = ks.exact_up_to;
    if (r.r1 && ks.learn_r1) {
      // The rows move into X, each layer's capture freed once copied: one copy of them at a time
      // (2 GiB at 32 layers of 4096 with --kt-tokens 2048), not two.
      std::vector<float> X;
      size_t total = 0;
      for (int l = 0; l < s.n_layers; l++) total += cap.attn_in[l].size() + cap.mlp_in[l].size();
      X.reserve(total);
      for (int l = 0; l < s.n_layers; l++) {
        X.insert(X.end(), cap.attn_in[l].begin(), cap.attn_in[l].end());
        std::vector<float>().swap(cap.attn_in[l]);
        X.insert(X.end(), cap.mlp_in[l].begin(), cap.mlp_in[l].end());
        std::vector<float>().swap(cap.mlp_in[l]);
      }
      int64_t rows = (int64_t)X.size() / s.hidden;
      co.label = "kurtail R1";
      LearnedRotation lr1 = learn_rotation(X, rows, s.hidden, rot.r1.matrix(), obj, co);
      rot.r1 = Rotation::from_matrix(std::move(lr1.r));
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
        LearnedRotation lr2 =
            learn_rotation(X, rows, s.head_dim, Rotation::hadamard(s.head_dim, true, r.seed + 1 + l).matrix(), obj, co);
        rot.r2_layers.push_back(Rotation::from_matrix(std::move(lr2.r)));
        rep.kt_r2_kurt_init += lr2.kurt_before / s.n_layers;
        rep.kt_r2_kurt_final += lr2.kurt_after / s.n_layers;
      }
      rep.r2_kind = "kurtail";
    }
    rep.kt_seconds = seconds_since(tk);
  }
};

}  // namespace

// Written only in kurtail recipes (and refused in others): the section is newer than the rest.
extern const OptionSection kKurtailOptions = {"kurtail", visit_kurtail, /*in_every_recipe=*/false};
std::unique_ptr<Method> make_kurtail() { return std::make_unique<Kurtail>(); }

}  // namespace kt
