#include "train/spinquant.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "train/cayley_sgd.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/progress.h"

namespace kt::train {

SpinResult learn_spinquant(const Model& m, const LossQuant& q, const Windows& calib, const std::vector<float>& r1,
                           const std::vector<std::vector<float>>& r2, const SpinOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelSpec& s = m.spec;
  const int nwin = calib.n();
  if (nwin == 0) fail("SpinQuant needs calibration windows");
  RotatedDecoder<float> dec(m, q);
  SpinResult res;
  RotationParams<float> p{r1, r2};
  res.batch = o.batch > 0 ? std::min(o.batch, nwin) : std::max(1, (nwin + std::max(o.iters, 1) - 1) / std::max(o.iters, 1));
  CayleySgd co{o.momentum, o.seed};
  CayleySgdState opt1(s.hidden, co);
  std::vector<CayleySgdState> opt2;
  for (int l = 0; l < s.n_layers; l++) opt2.emplace_back(s.head_dim, CayleySgd{o.momentum, o.seed + 1 + (uint64_t)l});

  // Step `it` reads windows it*batch .. (cycling through the calibration), one at a time: the
  // gradient is accumulated window by window, so memory is one window's activations whatever
  // the batch (every window has ctx tokens, so the mean of the windows' means is the batch's).
  auto window_of = [&](int it, int b) { return calib.window((int)(((int64_t)it * res.batch + b) % nwin)); };
  auto batch_loss = [&](int it, RotationParams<float>* g) {
    double sum = 0;
    for (int b = 0; b < res.batch; b++) {
      check_interrupted();
      sum += dec.loss(p, window_of(it, b), 1, calib.ctx, g);
    }
    return sum / res.batch;
  };
  res.loss_init = batch_loss(0, nullptr);
  Progress prog("spinquant", o.iters, o.progress);
  for (int it = 0; it < o.iters; it++) {
    RotationParams<float> g{std::vector<float>(p.r1.size(), 0.0f), {}};
    for (auto& r : p.r2) g.r2.emplace_back(r.size(), 0.0f);
    const double loss = batch_loss(it, &g);
    const float inv = 1.0f / (float)res.batch;
    for (float& x : g.r1) x *= inv;
    for (auto& r : g.r2)
      for (float& x : r) x *= inv;
    if (!std::isfinite(loss)) fail("SpinQuant: the loss is not finite at step " + std::to_string(it) + " (lower --sq-lr)");
    res.loss.push_back(loss);
    const double lr = 0.5 * o.lr * (1 + std::cos(M_PI * it / o.iters));  // cosine, no warm-up
    if (o.learn_r1) opt1.step(p.r1, g.r1, lr);
    if (o.learn_r2)
      for (int l = 0; l < s.n_layers; l++) opt2[l].step(p.r2[l], g.r2[l], lr);
    char buf[64];
    std::snprintf(buf, sizeof buf, "loss %.4f", loss);
    prog.update(it + 1, (int64_t)(it + 1) * res.batch * calib.ctx, buf);
    res.steps = it + 1;
  }
  prog.finish();
  res.loss_final = batch_loss(0, nullptr);
  res.qr_retractions = opt1.qr_retractions();
  res.orthogonality_error = orthogonality_error(p.r1, s.hidden);
  for (int l = 0; l < s.n_layers; l++) {
    res.qr_retractions += opt2[l].qr_retractions();
    res.orthogonality_error = std::max(res.orthogonality_error, orthogonality_error(p.r2[l], s.head_dim));
  }
  res.r1 = std::move(p.r1);
  res.r2 = std::move(p.r2);
  res.seconds = seconds_since(t0);
  return res;
}

}  // namespace kt::train
