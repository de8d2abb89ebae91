// The mixture-of-experts MLP of Mixtral and Qwen2-MoE, as transformers computes it:
//   p = softmax(router h); keep the top_k experts of each token (renormalised to sum 1 when
//   norm_topk_prob: Mixtral; as they are: Qwen2-MoE); y = sum_e p_e * expert_e(h)
//   (+ sigmoid(shared_gate h) * shared_expert(h) for Qwen2-MoE), summed in expert order.
//
// Routing reads the normed input before the MlpIn hook: the router and the shared-expert gate
// keep full-precision weights and input, as llm-compressor and vLLM leave the gate layers
// unquantized, so fake quantization (the hook) and the integer kernels (each linear quantizes
// its own input) route the same tokens to the same experts. Transforms fused offline (norm
// folding, R1, smoothing into the norm) reach the router's weights like any reader's; online
// transforms of the MLP input are refused for MoE by the quantize pipeline.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/forward.h"
#include "util/error.h"

namespace kt {

namespace {

struct Routed {
  std::vector<int64_t> rows;   // token rows routed to the expert, ascending
  std::vector<float> weights;  // their routing weights
};

// Top-k routing of every row of logits [rows, n]; ties go to the lower expert index.
std::vector<Routed> route(const ModelSpec& s, const float* logits, int64_t rows) {
  const int n = s.n_experts, k = s.top_k;
  std::vector<Routed> by_expert((size_t)n);
  std::vector<double> p((size_t)n);
  std::vector<int> order((size_t)n);
  for (int64_t r = 0; r < rows; r++) {
    const float* z = logits + r * n;
    const double mx = *std::max_element(z, z + n);
    double sum = 0;
    for (int e = 0; e < n; e++) sum += p[(size_t)e] = std::exp((double)z[e] - mx);
    for (double& v : p) v /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[(size_t)a] > p[(size_t)b]; });
    double kept = 0;
    for (int i = 0; i < k; i++) kept += p[(size_t)order[(size_t)i]];
    for (int i = 0; i < k; i++) {
      const int e = order[(size_t)i];
      by_expert[(size_t)e].rows.push_back(r);
      by_expert[(size_t)e].weights.push_back((float)(s.norm_topk_prob ? p[(size_t)e] / kept : p[(size_t)e]));
    }
  }
  return by_expert;
}

// One expert on rows h [n, hidden] (its MlpIn rows): down(act(gate h) * up h) -> out [n, hidden].
void run_expert(const ModelSpec& s, const ExpertWeights& ex, int layer, int expert, const float* h, int64_t n,
                Hooks* hooks, float* out) {
  const int64_t d = s.hidden, f = ex.gate.out();
  if (hooks) hooks->on_expert_input(layer, expert, Site::MlpIn, h, n, d);
  std::vector<float> g((size_t)(n * f)), u((size_t)(n * f));
  linears_forward(h, n, {{&ex.gate, g.data()}, {&ex.up, u.data()}});
  gated_activation(s, g.data(), u.data(), n * f);
  if (hooks) {
    hooks->on_activation(layer, Site::DownIn, g.data(), n, f);
    hooks->on_expert_input(layer, expert, Site::DownIn, g.data(), n, f);
  }
  linear_forward(g.data(), n, ex.down, out);
}

}  // namespace

void moe_mlp(const ModelSpec& s, const LayerWeights& w, int layer, float* h, int64_t rows, Hooks* hooks, float* y) {
  const int64_t d = s.hidden;
  const int n = s.n_experts;
  if ((int)w.experts.size() != n) fail("model.layers." + std::to_string(layer) + ": expert count differs from the spec");
  std::vector<float> logits((size_t)(rows * n));
  linear_forward(h, rows, w.router, logits.data());
  std::vector<float> shared_gate;
  if (w.has_shared_expert()) {
    shared_gate.resize((size_t)rows);
    linear_forward(h, rows, w.shared_router, shared_gate.data());
    for (float& v : shared_gate) v = 1.0f / (1.0f + std::exp(-v));
  }
  if (hooks) hooks->on_activation(layer, Site::MlpIn, h, rows, d);
  const std::vector<Routed> routed = route(s, logits.data(), rows);

  std::fill(y, y + rows * d, 0.0f);
  std::vector<float> in, out;
  for (int e = 0; e < n; e++) {
    const Routed& r = routed[(size_t)e];
    const int64_t m = (int64_t)r.rows.size();
    if (m == 0) continue;
    in.resize((size_t)(m * d));
    out.resize((size_t)(m * d));
    for (int64_t i = 0; i < m; i++) std::copy_n(h + r.rows[(size_t)i] * d, d, in.data() + i * d);
    run_expert(s, w.experts[(size_t)e], layer, e, in.data(), m, hooks, out.data());
    for (int64_t i = 0; i < m; i++) {
      float* yr = y + r.rows[(size_t)i] * d;
      const float* o = out.data() + i * d;
      const float wt = r.weights[(size_t)i];
      for (int64_t j = 0; j < d; j++) yr[j] += wt * o[j];
    }
  }
  if (w.has_shared_expert()) {
    out.resize((size_t)(rows * d));
    run_expert(s, w.shared, layer, n, h, rows, hooks, out.data());
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < d; j++) y[r * d + j] += shared_gate[(size_t)r] * out[(size_t)(r * d + j)];
  }
}

}  // namespace kt
