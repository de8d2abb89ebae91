// SpinQuant (issue #17): every op's backward against central finite differences in float64,
// the whole decoder's gradient w.r.t. R1 and one R2 on a 2-layer model, the training forward
// against kurtail's own forward, Cayley SGD's orthogonality, and the learned rotations fused
// by the quantize pipeline (the loss the learner saw is the loss of the model it wrote).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <random>

#include "model/forward.h"
#include "model/rope.h"
#include "quant/methods.h"
#include "quant/pipeline.h"
#include "quant/session.h"
#include "test_util.h"
#include "model_factory.h"
#include "train/cayley_sgd.h"
#include "train/ops.h"
#include "train/rotated_decoder.h"
#include "train/spinquant.h"
#include "transform/fuse.h"

namespace kt {
namespace {

using namespace kt::train;

std::vector<double> randn(size_t n, uint64_t seed, double sd = 1.0) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d(0, sd);
  std::vector<double> v(n);
  for (double& x : v) x = d(g);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// Checks grad (the analytic dL/dx) against central differences of L(x) at every element
// (or `stride`-spaced ones), relative to the gradient's scale.
template <class F>
void expect_gradient(const char* what, std::vector<double> x, const std::vector<double>& grad, F&& L,
                     size_t stride = 1, double tol = 1e-6) {
  ASSERT_EQ(x.size(), grad.size());
  double scale = 1e-12;
  for (double g : grad) scale = std::max(scale, std::abs(g));
  double worst = 0;
  for (size_t i = 0; i < x.size(); i += stride) {
    const double x0 = x[i], h = 1e-5 * std::max(1.0, std::abs(x0));
    x[i] = x0 + h;
    const double lp = L(x);
    x[i] = x0 - h;
    const double lm = L(x);
    x[i] = x0;
    worst = std::max(worst, std::abs((lp - lm) / (2 * h) - grad[i]) / scale);
  }
  EXPECT_LT(worst, tol) << what << ": max |numeric - analytic| / max |analytic|";
}

TEST(TrainOps, RmsNormBackward) {
  const int rows = 3, d = 8;
  auto x = randn(rows * d, 1), gy = randn(rows * d, 2);
  auto L = [&](const std::vector<double>& xv) {
    std::vector<double> y(rows * d), inv(rows);
    rmsnorm_forward(xv.data(), y.data(), inv.data(), rows, d, 1e-5);
    return dot(y, gy);
  };
  std::vector<double> y(rows * d), inv(rows), dx(rows * d, 0.0);
  rmsnorm_forward(x.data(), y.data(), inv.data(), rows, d, 1e-5);
  rmsnorm_backward(gy.data(), y.data(), inv.data(), dx.data(), rows, d);
  expect_gradient("rmsnorm dx", x, dx, L);
}

TEST(TrainOps, LinearBackward) {
  const int rows = 4, in = 6, out = 5;
  auto x = randn(rows * in, 1), W = randn(out * in, 2), b = randn(out, 3), gy = randn(rows * out, 4);
  auto Lof = [&](const std::vector<double>& xv, const std::vector<double>& Wv, const std::vector<double>& bv) {
    std::vector<double> y(rows * out);
    linear_forward(xv.data(), Wv.data(), bv.data(), y.data(), rows, in, out);
    return dot(y, gy);
  };
  std::vector<double> dx(rows * in, 0.0), dW(out * in), db(out);
  linear_backward(gy.data(), x.data(), W.data(), dx.data(), dW.data(), db.data(), rows, in, out);
  expect_gradient("linear dx", x, dx, [&](const std::vector<double>& v) { return Lof(v, W, b); });
  expect_gradient("linear dW", W, dW, [&](const std::vector<double>& v) { return Lof(x, v, b); });
  expect_gradient("linear db", b, db, [&](const std::vector<double>& v) { return Lof(x, W, v); });
}

ModelSpec rope_spec(RopeStyle style) {
  ModelSpec s;
  s.hidden = 32, s.n_heads = 2, s.n_kv_heads = 1, s.head_dim = 16, s.max_pos = 64;
  s.rope_style = style;
  s.rope_scaling.type = "llama3";
  s.rope_scaling.factor = 8;
  s.rope_scaling.original_max_position = 16;
  return s;
}

TEST(TrainOps, RopeForwardIsModelRopeAndBackwardIsItsTranspose) {
  for (RopeStyle style : {RopeStyle::RotateHalf, RopeStyle::Interleaved}) {
    const ModelSpec s = rope_spec(style);
    const int nseq = 2, ntok = 5, nh = 2;
    auto xd = randn(nseq * ntok * nh * s.head_dim, 5);
    std::vector<float> xf(xd.begin(), xd.end()), ref = xf;
    apply_rope(s, ref.data(), ntok, nh, 0, nseq);
    rope_forward(rope_table<float>(s, ntok), xf.data(), nseq, ntok, nh);
    EXPECT_EQ(xf, ref) << "the training RoPE must be model/rope.cc's bit for bit";
    const auto t = rope_table<double>(s, ntok);
    auto gy = randn(xd.size(), 6);
    std::vector<double> dx = gy;
    rope_backward(t, dx.data(), nseq, ntok, nh);
    expect_gradient("rope dx", xd, dx, [&](std::vector<double> v) {
      rope_forward(t, v.data(), nseq, ntok, nh);
      return dot(v, gy);
    });
  }
}

TEST(TrainOps, AttentionBackwardWithGqaAndWindow) {
  for (int window : {0, 3}) {
    const AttnShape a{2, 6, 4, 2, 4, window, 0.5f};
    const int64_t rows = a.nseq * a.ntok, qd = a.n_heads * a.head_dim, kvd = a.n_kv * a.head_dim;
    auto q = randn(rows * qd, 7), k = randn(rows * kvd, 8), v = randn(rows * kvd, 9), go = randn(rows * qd, 10);
    std::vector<double> P(a.nseq * a.n_heads * a.ntok * a.ntok), out(rows * qd);
    auto L = [&](const std::vector<double>& qv, const std::vector<double>& kv, const std::vector<double>& vv) {
      std::vector<double> o(rows * qd), Pp(P.size());
      attention_forward(a, qv.data(), kv.data(), vv.data(), o.data(), Pp.data());
      return dot(o, go);
    };
    attention_forward(a, q.data(), k.data(), v.data(), out.data(), P.data());
    std::vector<double> dq(rows * qd), dk(rows * kvd), dv(rows * kvd);
    attention_backward(a, go.data(), q.data(), k.data(), v.data(), P.data(), dq.data(), dk.data(), dv.data());
    expect_gradient("attention dq", q, dq, [&](const std::vector<double>& x) { return L(x, k, v); });
    expect_gradient("attention dk", k, dk, [&](const std::vector<double>& x) { return L(q, x, v); });
    expect_gradient("attention dv", v, dv, [&](const std::vector<double>& x) { return L(q, k, x); });
  }
}

TEST(TrainOps, AttentionForwardIsModelAttend) {
  ModelSpec s;
  s.hidden = 16, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 4, s.sliding_window = 3;
  const int nseq = 2, ntok = 7;
  const int64_t rows = nseq * ntok;
  auto qd = randn(rows * 16, 11), kd = randn(rows * 8, 12), vd = randn(rows * 8, 13);
  std::vector<float> q(qd.begin(), qd.end()), k(kd.begin(), kd.end()), v(vd.begin(), vd.end());
  std::vector<float> ref(rows * 16), out(rows * 16), P(nseq * 4 * ntok * ntok);
  attend(s, q.data(), KVView{k.data(), v.data(), ntok}, nseq, ntok, 0, ntok, s.window(0), ref.data());
  attention_forward(AttnShape{nseq, ntok, 4, 2, 4, s.window(0), s.attn_scale()}, q.data(), k.data(), v.data(),
                    out.data(), P.data());
  EXPECT_LT(test::max_rel_diff(out, ref), 1e-5);
}

TEST(TrainOps, SwigluAndCrossEntropyBackward) {
  const int n = 12;
  auto g = randn(n, 14), u = randn(n, 15), gh = randn(n, 16);
  auto L = [&](const std::vector<double>& gv, const std::vector<double>& uv) {
    std::vector<double> h(n);
    swiglu_forward(gv.data(), uv.data(), h.data(), n);
    return dot(h, gh);
  };
  std::vector<double> dg(n), du(n);
  swiglu_backward(gh.data(), g.data(), u.data(), dg.data(), du.data(), n);
  expect_gradient("swiglu dg", g, dg, [&](const std::vector<double>& x) { return L(x, u); });
  expect_gradient("swiglu du", u, du, [&](const std::vector<double>& x) { return L(g, x); });

  const int rows = 3, V = 7;
  auto z = randn(rows * V, 17);
  const std::vector<int32_t> t = {2, -1, 6};  // the middle row is not scored
  auto CE = [&](std::vector<double> zv) { return cross_entropy(zv.data(), t.data(), rows, V, false, 1.0) / 2; };
  std::vector<double> dz = z;
  const double loss = cross_entropy(dz.data(), t.data(), rows, V, true, 0.5);
  EXPECT_NEAR(loss / 2, CE(z), 1e-12);
  expect_gradient("cross-entropy dlogits", z, dz, CE);
}

// A 2-layer random model with GQA and Qwen2's q/k/v biases, rotations R3/R4 online.
struct TinyDecoder {
  std::unique_ptr<Model> m;
  LossQuant q;
  std::vector<int32_t> tokens;
  int nseq = 2, ntok = 6;
  TinyDecoder(bool biases, bool online = true) {
    test::RandomModelOptions o;
    o.hidden = 32, o.layers = 2, o.heads = 4, o.kv_heads = 2, o.ffn = 48, o.qwen2_bias = biases, o.weight_std = 0.2;
    m = Model::open(test::make_random_model(o));
    if (online) {
      q.r3 = std::make_shared<const Rotation>(Rotation::hadamard(m->spec.head_dim, false, 3));
      q.r4 = std::make_shared<const Rotation>(Rotation::hadamard(m->spec.ffn, false, 4));
    }
    std::mt19937 g(5);
    for (int i = 0; i < nseq * ntok; i++) tokens.push_back((int32_t)(g() % 500));
  }
  template <class T>
  RotationParams<T> hadamards(uint64_t seed) const {
    RotationParams<T> r;
    Tensor r1 = Rotation::hadamard(m->spec.hidden, true, seed).matrix();
    r.r1.assign(r1.data.begin(), r1.data.end());
    for (int l = 0; l < m->spec.n_layers; l++) {
      Tensor r2 = Rotation::hadamard(m->spec.head_dim, true, seed + 1 + l).matrix();
      r.r2.emplace_back(r2.data.begin(), r2.data.end());
    }
    return r;
  }
};

TEST(RotatedDecoder, FullPrecisionLogitsAreTheModelsWhateverTheRotations) {
  // Exact identity: a rotated full-precision model computes the same function.
  TinyDecoder t(/*biases=*/true);
  const auto ref = forward(*t.m, t.tokens.data(), t.nseq, t.ntok, nullptr, nullptr);
  RotatedDecoder<float> dec(*t.m, t.q);
  const auto got = dec.logits(t.hadamards<float>(9), t.tokens.data(), t.nseq, t.ntok);
  EXPECT_LT(test::max_rel_diff(got, ref), 1e-4);
  RotatedDecoder<float> plain(*t.m, LossQuant{});
  RotationParams<float> id = t.hadamards<float>(9);
  const int d = t.m->spec.hidden, hd = t.m->spec.head_dim;
  id.r1.assign(d * d, 0.0f);
  for (int i = 0; i < d; i++) id.r1[i * d + i] = 1;
  for (auto& r2 : id.r2) {
    r2.assign(hd * hd, 0.0f);
    for (int i = 0; i < hd; i++) r2[i * hd + i] = 1;
  }
  EXPECT_LT(test::max_rel_diff(plain.logits(id, t.tokens.data(), t.nseq, t.ntok), ref), 1e-4);
}

TEST(RotatedDecoder, GradientWrtR1AndR2MatchesFiniteDifferences) {
  // Whole model, float64, rotations perturbed away from orthogonal (the Euclidean gradient is
  // what Cayley SGD projects), every coordinate of R1 (stride 7) and of layer 1's R2.
  for (bool biases : {false, true}) {
    TinyDecoder t(biases);
    RotatedDecoder<double> dec(*t.m, t.q);
    RotationParams<double> r = t.hadamards<double>(21);
    RotationParams<double> g{std::vector<double>(r.r1.size(), 0.0), {}};
    for (auto& x : r.r2) g.r2.emplace_back(x.size(), 0.0);
    dec.loss(r, t.tokens.data(), t.nseq, t.ntok, &g);
    expect_gradient("dLoss/dR1", r.r1, g.r1,
                    [&](const std::vector<double>& v) {
                      RotationParams<double> p = r;
                      p.r1 = v;
                      return dec.loss(p, t.tokens.data(), t.nseq, t.ntok, nullptr);
                    },
                    7, 1e-5);
    expect_gradient("dLoss/dR2[1]", r.r2[1], g.r2[1],
                    [&](const std::vector<double>& v) {
                      RotationParams<double> p = r;
                      p.r2[1] = v;
                      return dec.loss(p, t.tokens.data(), t.nseq, t.ntok, nullptr);
                    },
                    1, 1e-5);
  }
}

TEST(RotatedDecoder, FloatGradientIsTheFloat64OneAndQuantizersChangeTheLoss) {
  // The learner runs in float: its gradient agrees with the float64 one (checked against finite
  // differences above) to float precision. With 4-bit quantizers the loss moves away from FP.
  TinyDecoder t(false);
  RotatedDecoder<float> f(*t.m, t.q);
  RotatedDecoder<double> d(*t.m, t.q);
  const auto rf = t.hadamards<float>(3);
  const auto rd = t.hadamards<double>(3);
  RotationParams<float> gf{std::vector<float>(rf.r1.size(), 0.0f), {}};
  RotationParams<double> gd{std::vector<double>(rd.r1.size(), 0.0), {}};
  for (auto& x : rf.r2) gf.r2.emplace_back(x.size(), 0.0f), gd.r2.emplace_back(x.size(), 0.0);
  const double lf = f.loss(rf, t.tokens.data(), t.nseq, t.ntok, &gf);
  const double ld = d.loss(rd, t.tokens.data(), t.nseq, t.ntok, &gd);
  EXPECT_NEAR(lf, ld, 1e-5 * ld);
  auto rel = [](const auto& a, const auto& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); i++) num += std::pow(a[i] - b[i], 2), den += std::pow(b[i], 2);
    return std::sqrt(num / den);
  };
  EXPECT_LT(rel(gf.r1, gd.r1), 1e-4);
  EXPECT_LT(rel(gf.r2[0], gd.r2[0]), 1e-4);

  Recipe rc;
  rc.set_bits(4, 4, 4, t.m->spec.head_dim);
  LossQuant q = t.q;
  for (Site s : {Site::AttnIn, Site::OIn, Site::MlpIn, Site::DownIn}) q.site[(int)s] = rc.a;
  q.site[(int)Site::K] = rc.k, q.site[(int)Site::V] = rc.v;
  q.weight = rc.w;
  q.weight.mse_search = false;
  RotatedDecoder<float> fq(*t.m, q);
  EXPECT_GT(std::abs(fq.loss(rf, t.tokens.data(), t.nseq, t.ntok, nullptr) - lf), 1e-3)
      << "the 4-bit quantizers must change the loss";
}

TEST(CayleySgd, KeepsRotationsOrthogonalOverManySteps) {
  const int n = 32;
  std::vector<float> R(n * n, 0.0f);
  for (int i = 0; i < n; i++) R[i * n + i] = 1;
  CayleySgdState opt(n, CayleySgd{0.0, 1});
  std::mt19937_64 rng(2);
  std::normal_distribution<float> nd(0, 1);
  for (int it = 0; it < 1000; it++) {
    std::vector<float> G(n * n);
    for (float& x : G) x = nd(rng);
    opt.step(R, G, 1.5);
  }
  EXPECT_LT(orthogonality_error(R, n), 1e-5);
}

TEST(CayleySgd, DescendsAndRepeatsBitForBit) {
  // min ||R - Q||_F^2 over orthogonal R for a fixed orthogonal Q: gradient 2 (R - Q).
  const int n = 16;
  // Q = A A has determinant +1: reachable from I (the Cayley steps stay in SO(n))
  const Tensor A = Rotation::random_orthogonal(n, 7).matrix();
  Tensor Qt({n, n});
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++)
      for (int k = 0; k < n; k++) Qt.data[i * n + j] += A.data[i * n + k] * A.data[k * n + j];
  auto run = [&]() {
    std::vector<float> R(n * n, 0.0f);
    for (int i = 0; i < n; i++) R[i * n + i] = 1;
    CayleySgdState opt(n, CayleySgd{0.0, 3});
    std::vector<double> losses;
    for (int it = 0; it < 200; it++) {
      std::vector<float> G(n * n);
      double l = 0;
      for (int i = 0; i < n * n; i++) G[i] = 2 * (R[i] - Qt.data[i]), l += (R[i] - Qt.data[i]) * (R[i] - Qt.data[i]);
      losses.push_back(l);
      opt.step(R, G, 0.2);
    }
    return std::make_pair(R, losses);
  };
  auto [R1, l1] = run();
  auto [R2, l2] = run();
  EXPECT_EQ(R1, R2);
  EXPECT_LT(l1.back(), 0.05 * l1.front());
}

TEST(Spinquant, TheLossItLearnedIsTheLossOfTheModelThePipelineWrote) {
  // The proxy, 4 calibration windows of 64 tokens, 6 steps of 2 windows, W4A4KV4 with RTN
  // weights (no clip search, as the loss uses): the cross-entropy the learner reports on its
  // first micro-batch after learning equals that of the model the pipeline wrote, evaluated by
  // kurtail's own forward with the recipe's quantizers.
  auto m = Model::open(test::tinyllama());
  QuantizeOptions o;
  o.progress = false;
  o.recipe.set_method("spinquant");
  o.recipe.set_bits(4, 4, 4, m->spec.head_dim);
  o.recipe.w.mse_search = false;
  o.recipe.spinquant.iters = 6;
  o.recipe.spinquant.batch = 2;
  o.calib_path = test::data() + "/text/calib.txt";
  o.nsamples = 4;
  o.seqlen = 64;
  const QuantizeReport rep = quantize_model(*m, o);
  EXPECT_EQ(rep.r1_kind, "spinquant");
  EXPECT_EQ(rep.sq_steps, 6);
  EXPECT_LT(rep.sq_orthogonality_error, 1e-5);
  EXPECT_LT(rep.sq_loss_final, rep.sq_loss_init) << "6 steps should lower the quantized loss on the proxy";
  auto ref = Model::open(test::tinyllama());
  const Windows w = calibration_windows(*ref->tokenizer, o.calib_path, 4, 64, o.seed);
  Session sess(*m, o.recipe);
  auto logits = forward(*m, w.tokens.data(), 2, 64, nullptr, sess.hooks());
  std::vector<int32_t> targets;
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < 64; t++) targets.push_back(t + 1 < 64 ? w.tokens[b * 64 + t + 1] : -1);
  const double ce = cross_entropy(logits.data(), targets.data(), 128, m->spec.vocab, false, 1.0) / 126;
  EXPECT_NEAR(ce, rep.sq_loss_final, 2e-3 * ce);
}

TEST(Spinquant, LearnedRotationsFusedAt16BitsKeepTheFpLogits) {
  // Learn on the 2-layer model at W4A4KV4, then fuse the learned R1/R2 with the pipeline's
  // transforms into the FP weights, R3/R4 online at 16 bits: the logits are the original's.
  TinyDecoder t(true);
  Recipe rc;
  rc.set_bits(4, 4, 4, t.m->spec.head_dim);
  LossQuant q = t.q;
  for (Site s : {Site::AttnIn, Site::OIn, Site::MlpIn, Site::DownIn}) q.site[(int)s] = rc.a;
  q.site[(int)Site::K] = rc.k, q.site[(int)Site::V] = rc.v;
  Windows calib;
  calib.ctx = t.ntok;
  calib.tokens = t.tokens;
  const auto init = t.hadamards<float>(1);
  SpinOptions so;
  so.iters = 20;
  so.batch = 2;
  const SpinResult res = learn_spinquant(*t.m, q, calib, init.r1, init.r2, so);
  ASSERT_NE(res.r1, init.r1) << "the rotations must have moved";
  const auto ref = forward(*t.m, t.tokens.data(), t.nseq, t.ntok, nullptr, nullptr);
  Model& m = *t.m;
  const ModelSpec& s = m.spec;
  Tensor r1({s.hidden, s.hidden});
  r1.data = res.r1;
  const Rotation R1 = Rotation::from_matrix(r1);
  fold_final_norm(m);
  rotate_residual_globals(m, R1);
  const auto r1p = std::make_shared<const Rotation>(R1);
  for (int l = 0; l < s.n_layers; l++) {
    LayerWeights w = *m.layer(l);
    fold_layer_norms(w);
    rotate_residual_layer(w, r1p);
    Tensor r2({s.head_dim, s.head_dim});
    r2.data = res.r2[l];
    rotate_value_heads(w, s, Rotation::from_matrix(r2));
    fuse_down_input(w, {*q.r4});
    m.set_layer(l, std::move(w));
  }
  struct Online : Hooks {
    const Rotation *r3, *r4;
    const ModelSpec* s;
    void on_activation(int, Site site, float* x, int64_t rows, int64_t cols) override {
      if (site == Site::Q || site == Site::K) rotate_heads(x, rows, (int)(cols / s->head_dim), *r3);
      if (site == Site::DownIn) r4->apply(x, rows);
    }
  } online;
  online.r3 = q.r3.get(), online.r4 = q.r4.get(), online.s = &s;
  const auto got = forward(m, t.tokens.data(), t.nseq, t.ntok, nullptr, &online);
  EXPECT_LT(test::max_rel_diff(got, ref), 1e-4);
}

TEST(Spinquant, SameSeedSameBytesForOneAndTwoThreadsAndTheCliRefusesWhatItCannotTrain) {
  const std::string dir = test::temp_dir("sqdet");
  const std::string args = "quantize -q --method spinquant --nsamples 4 --seqlen 64 --sq-iters 4 --sq-batch 2 "
                           "--truncate-layers 2 --seed ";
  auto t1 = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1", t2 = "OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2";
  for (auto [name, seed, threads] : {std::tuple{"a", 5, t2}, {"c", 5, t1}, {"d", 6, t2}}) {
    auto r = test::run_cli(args + std::to_string(seed) + " --out " + dir + "/" + name, threads);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  const std::string a = read_file(dir + "/a/model.safetensors", SIZE_MAX);
  EXPECT_TRUE(a == read_file(dir + "/c/model.safetensors", SIZE_MAX)) << "1 and 2 threads differ";
  EXPECT_FALSE(a == read_file(dir + "/d/model.safetensors", SIZE_MAX)) << "another seed must give other rotations";
  auto moe = test::run_cli("quantize --method spinquant --model " + test::data() + "/models/archs/mixtral --out " + dir +
                           "/m");
  test::expect_documented_error(moe, "method spinquant does not support mixture-of-experts layers yet");
}

TEST(Spinquant, ARotationTheRecipeTurnsOffIsTheIdentityAndStaysFixed) {
  const std::string dir = test::temp_dir("sqoff");
  for (const char* off : {"--no-r1", "--no-r2"}) {
    auto r = test::run_cli(std::string("quantize --json -q --method spinquant ") + off +
                           " --truncate-layers 2 --nsamples 4 --seqlen 64 --sq-iters 2 --out " + dir + "/q --force");
    ASSERT_EQ(r.code, 0) << off << ": " << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j[std::string(off) == "--no-r1" ? "r1" : "r2"], "") << off;
    EXPECT_EQ(j[std::string(off) == "--no-r1" ? "r2" : "r1"], "spinquant") << off;
  }
}

TEST(Spinquant, RefusesFamiliesItCannotTrainByName) {
  ModelSpec s;
  s.arch = "qwen3";
  EXPECT_NE(train::unsupported(s).find("Qwen3"), std::string::npos);
  s.arch = "mixtral";
  s.n_experts = 4;
  std::string why;
  EXPECT_FALSE(method_runs_on(*find_method("spinquant"), s, &why));
  EXPECT_NE(why.find("spinquant"), std::string::npos);
  EXPECT_NE(why.find("mixture-of-experts"), std::string::npos);
}

}  // namespace
}  // namespace kt
