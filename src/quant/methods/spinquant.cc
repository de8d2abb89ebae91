// spinquant (Liu et al. 2024, arXiv 2405.16406): QuaRot's rotations, with R1 and every layer's
// R2 learned end to end: Cayley SGD on the cross-entropy of the whole quantized model (the
// recipe's activation and K/V quantizers, R3/R4 online, weights RTN or full precision), the
// backward pass of train/rotated_decoder.h. Learning starts at the Hadamards QuaRot would fuse.
#include "quant/method.h"
#include "quant/online_plan.h"
#include "quant/pipeline.h"
#include "train/spinquant.h"

namespace kt {

namespace {

void visit_spinquant(Recipe& r, OptionVisitor& v) {
  SpinquantSettings& q = r.spinquant;
  v.integer(q.iters, 100, {"iters", "--sq-iters", "spinquant: optimiser steps (SpinQuant: 100)"}, {0, 1000000});
  v.real(q.lr, 1.5, {"lr", "--sq-lr", "spinquant: peak learning rate, cosine schedule (SpinQuant: 1.5)"},
         {0, 100, /*lo_open=*/true, false});
  v.integer(q.batch, 0,
            {"batch", "--sq-batch", "spinquant: calibration windows per step (0 = one pass over them in --sq-iters steps)"},
            {1, kMaxCount, /*zero_default=*/true});
  v.real(q.momentum, 0, {"momentum", "--sq-momentum", "spinquant: Cayley SGD momentum (SpinQuant: 0)"},
         {0, 1, false, /*hi_open=*/true});
  v.named_bool(q.gptq_fp, true,
               {"gptq_fp_weights", "--sq-gptq-weights",
                "spinquant with --weights gptq: learn with fp weights (SpinQuant's W16A4KV4, then GPTQ) or rtn"},
               "fp", "rtn");
  v.flag(q.learn_r1, true, {"learn_r1", nullptr, "learn R1 (false: keep the Hadamard)"});
  v.flag(q.learn_r2, true, {"learn_r2", nullptr, "learn each layer's R2 (false: keep the Hadamards)"});
}

std::vector<float> flat(const Tensor& t) { return t.data; }
Tensor identity(int n) {
  Tensor t({n, n});
  for (int i = 0; i < n; i++) t.data[(size_t)i * n + i] = 1.0f;
  return t;
}
Tensor square(int n, std::vector<float> d) {
  Tensor t({n, n});
  t.data = std::move(d);
  return t;
}

class Spinquant : public Method {
 public:
  Needs needs() const override {
    Needs n;
    n.calibration = true;
    n.whole_globals = true;  // the end-to-end loss runs the embedding and head
    return n;
  }
  std::string unsupported(const ModelSpec& s) const override { return train::unsupported(s); }

  void prepare(Model& m, const Windows& calib, Rotations& rot, MethodContext& ctx) override {
    const Recipe& r = ctx.recipe;
    const ModelSpec& s = ctx.spec;
    const SpinquantSettings& q = r.spinquant;
    // The loss quantizes what the model will: every site's quantizer as the compiled plan has
    // it (fake quantization in the hook), R3/R4 as the pipeline will run them.
    train::LossQuant lq;
    const auto plan = plan_online(r, s);
    for (int st = 0; st < kNumSites; st++) {
      const int layer = st == (int)Site::LmHeadIn ? s.n_layers : 0;
      const SitePlan& sp = plan->site(layer, (Site)st);
      if (sp.where != QuantWhere::None) lq.site[st] = sp.quant;
    }
    const bool fp_weights = r.weight_algo == "gptq" && q.gptq_fp;
    if (!fp_weights) {
      lq.weight = r.w;
      lq.weight.mse_search = false;  // plain RTN in the loss, as SpinQuant trains (the clip search runs once at the end)
    }
    lq.quant_lm_head = r.quant_lm_head;
    if (!fp_weights) {
      lq.head_weight = r.lm_head_w();
      lq.head_weight.mse_search = false;
    }
    if (r.r3) lq.r3 = std::make_shared<const Rotation>(rot.r3);
    if (r.r4) lq.r4 = std::make_shared<const Rotation>(rot.r4.at(0));
    train::SpinOptions o;
    o.iters = q.iters;
    o.lr = q.lr;
    o.batch = q.batch;
    o.momentum = q.momentum;
    o.learn_r1 = q.learn_r1 && r.r1;
    o.learn_r2 = q.learn_r2 && r.r2;
    o.seed = r.seed + 11;
    o.progress = ctx.opt.progress;
    // A rotation the recipe turns off (--no-r1, --no-r2) is the identity in the loss and stays fixed.
    auto start = [](bool on, const Rotation& r, int n) { return on ? flat(r.matrix()) : flat(identity(n)); };
    std::vector<std::vector<float>> r2(s.n_layers, start(r.r2, rot.r2, s.head_dim));
    train::SpinResult res = train::learn_spinquant(m, lq, calib, start(r.r1, rot.r1, s.hidden), r2, o);
    if (o.learn_r1) {
      rot.r1 = Rotation::from_matrix(square(s.hidden, std::move(res.r1)));
      ctx.report.r1_kind = "spinquant";
    }
    if (o.learn_r2) {
      for (auto& m2 : res.r2) rot.r2_layers.push_back(Rotation::from_matrix(square(s.head_dim, std::move(m2))));
      ctx.report.r2_kind = "spinquant";
    }
    ctx.recipe.spinquant.batch = res.batch;  // the recipe records what ran (0 selected the default)
    QuantizeReport& rep = ctx.report;
    rep.sq_loss_init = res.loss_init;
    rep.sq_loss_final = res.loss_final;
    rep.sq_steps = res.steps;
    rep.sq_batch = res.batch;
    rep.sq_seconds = res.seconds;
    rep.sq_orthogonality_error = res.orthogonality_error;
    rep.sq_train_weights = fp_weights ? "fp (W16)" : "rtn " + lq.weight.describe();
  }
};

}  // namespace

extern const OptionSection kSpinquantOptions = {"spinquant", visit_spinquant, /*in_every_recipe=*/false};
std::unique_ptr<Method> make_spinquant() { return std::make_unique<Spinquant>(); }

}  // namespace kt
