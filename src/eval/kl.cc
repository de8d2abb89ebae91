#include "eval/kl.h"

#include <cmath>

#include "util/error.h"
#include "util/ordered_sum.h"
#include "util/progress.h"

namespace kt {

CompareResult compare_to_reference(const Session& ref_s, const Session& sess, const Windows& w, const EvalOptions& opt) {
  const Model& ref = ref_s.model();
  const Model& m = sess.model();
  auto t0 = std::chrono::steady_clock::now();
  const int V = m.spec.vocab, T = w.ctx;
  if (ref.spec.vocab != V)
    fail(ref.path, "--kl-ref: vocab of " + std::to_string(ref.spec.vocab) + " differs from the model's " +
                       std::to_string(V));
  // Windows are processed in chunks so the reference log-probs of a chunk fit in ~256 MiB.
  const int chunk = std::max(1, (int)((256ull << 20) / ((uint64_t)T * V * 4)));
  double kl = 0, nll = 0, ref_nll = 0;
  int64_t agree = 0;
  Progress prog("kl", w.n(), opt.progress);
  EvalOptions o = opt;
  o.progress = false;
  for (int c0 = 0; c0 < w.n(); c0 += chunk) {
    const int nc = std::min(chunk, w.n() - c0);
    Windows sub;
    sub.ctx = T;
    sub.tokens.assign(w.window(c0), w.window(c0) + (int64_t)nc * T);
    std::vector<float> ref_lp((size_t)nc * (T - 1) * V);
    std::vector<int> ref_arg((size_t)nc * (T - 1));
    run_windows(ref_s, sub, o, [&](int i, const float* lg) {
      const int32_t* tok = sub.window(i);
      ref_nll += ordered_sum(T - 1, [&](int64_t t) {
        const float* r = lg + t * V;
        int am = 0;
        const float lse = log_sum_exp(r, V, &am);
        float* out = &ref_lp[((size_t)i * (T - 1) + t) * V];
        for (int j = 0; j < V; j++) out[j] = r[j] - lse;
        ref_arg[(size_t)i * (T - 1) + t] = am;
        return (double)(lse - r[tok[t + 1]]);
      });
    });
    run_windows(sess, sub, o, [&](int i, const float* lg) {
      const int32_t* tok = sub.window(i);
      // per-position terms in slots, summed in order (same bits for any thread count)
      std::vector<double> k((size_t)T - 1), nl((size_t)T - 1);
      std::vector<char> a((size_t)T - 1);
#pragma omp parallel for
      for (int t = 0; t < T - 1; t++) {
        const float* r = lg + (int64_t)t * V;
        int am = 0;
        const float lse = log_sum_exp(r, V, &am);
        const float* p = &ref_lp[((size_t)i * (T - 1) + t) * V];
        double kt_ = 0;
        for (int j = 0; j < V; j++) kt_ += std::exp(p[j]) * (p[j] - (r[j] - lse));
        k[t] = kt_;
        a[t] = am == ref_arg[(size_t)i * (T - 1) + t];
        nl[t] = lse - r[tok[t + 1]];
      }
      for (int t = 0; t < T - 1; t++) kl += k[t], agree += a[t], nll += nl[t];
    });
    prog.update(c0 + nc, (int64_t)(c0 + nc) * T);
  }
  prog.finish();
  CompareResult res;
  res.positions = (int64_t)w.n() * (T - 1);
  res.mean_kl = kl / res.positions;
  res.top1 = (double)agree / res.positions;
  res.mean_nll = nll / res.positions;
  res.ppl = std::exp(res.mean_nll);
  res.ref_mean_nll = ref_nll / res.positions;
  res.ref_ppl = std::exp(res.ref_mean_nll);
  res.seconds = seconds_since(t0);
  return res;
}

}  // namespace kt
