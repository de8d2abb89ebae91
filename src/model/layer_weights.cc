// LayerWeights' field accessors and site_consumers: the only place that maps table fields and
// activation sites to the members of the Llama layer.
#include <string>

#include "model/model.h"
#include "util/error.h"

namespace kt {

namespace {

template <class LW>
auto& expert_of(LW& w, int e) {
  if (e < 0 || e >= (int)w.experts.size())
    fail("expert " + std::to_string(e) + " out of range (the layer has " + std::to_string(w.experts.size()) + ")");
  return w.experts[(size_t)e];
}

template <class LW>
auto& linear_of(LW& w, Field f, int e) {
  switch (f) {
    case Field::Router: return w.router;
    case Field::ExpGate: return expert_of(w, e).gate;
    case Field::ExpUp: return expert_of(w, e).up;
    case Field::ExpDown: return expert_of(w, e).down;
    case Field::ShGate: return w.shared.gate;
    case Field::ShUp: return w.shared.up;
    case Field::ShDown: return w.shared.down;
    case Field::ShRouter: return w.shared_router;
    case Field::Q: return w.q;
    case Field::K: return w.k;
    case Field::V: return w.v;
    case Field::O: return w.o;
    case Field::Gate: return w.gate;
    case Field::Up: return w.up;
    case Field::Down: return w.down;
    default: break;
  }
  fail("layer field " + std::to_string((int)f) + " is not a linear");
}

template <class LW>
auto& norm_of(LW& w, Field f) {
  if (f == Field::AttnNorm) return w.attn_norm;
  if (f == Field::MlpNorm) return w.mlp_norm;
  if (f == Field::QNorm) return w.q_norm;
  if (f == Field::KNorm) return w.k_norm;
  if (f == Field::PostAttnNorm) return w.post_attn_norm;
  if (f == Field::PostMlpNorm) return w.post_mlp_norm;
  fail("layer field " + std::to_string((int)f) + " is not a norm");
}

template <bool Const, class LW>
std::vector<SiteGroup<Const>> sites_of(LW& w) {
  using G = SiteGroup<Const>;
  std::vector<G> v;
  v.push_back(G{Site::AttnIn, &w.attn_norm, Field::AttnNorm, {{Field::Q, &w.q}, {Field::K, &w.k}, {Field::V, &w.v}}, false});
  v.push_back(G{Site::OIn, nullptr, Field::AttnNorm, {{Field::O, &w.o}}, true});
  if (w.experts.empty()) {
    v.push_back(G{Site::MlpIn, &w.mlp_norm, Field::MlpNorm, {{Field::Gate, &w.gate}, {Field::Up, &w.up}}, false});
    v.push_back(G{Site::DownIn, nullptr, Field::MlpNorm, {{Field::Down, &w.down}}, true});
    return v;
  }
  // MoE: everything the normed MLP input feeds, then one down_proj input per expert
  const int n = (int)w.experts.size();
  const bool shared = w.has_shared_expert();
  G in{Site::MlpIn, &w.mlp_norm, Field::MlpNorm, {{Field::Router, &w.router, -1, true}}, false};
  if (shared) in.linears.push_back({Field::ShRouter, &w.shared_router, -1, true});
  for (int e = 0; e < n; e++) {
    in.linears.push_back({Field::ExpGate, &w.experts[(size_t)e].gate, e});
    in.linears.push_back({Field::ExpUp, &w.experts[(size_t)e].up, e});
  }
  if (shared) {
    in.linears.push_back({Field::ShGate, &w.shared.gate, n});
    in.linears.push_back({Field::ShUp, &w.shared.up, n});
  }
  v.push_back(std::move(in));
  for (int e = 0; e < n; e++)
    v.push_back(G{Site::DownIn, nullptr, Field::MlpNorm, {{Field::ExpDown, &w.experts[(size_t)e].down, e}}, true, e});
  if (shared) v.push_back(G{Site::DownIn, nullptr, Field::MlpNorm, {{Field::ShDown, &w.shared.down, n}}, true, n});
  return v;
}

}  // namespace

Linear& LayerWeights::linear(Field f, int expert) { return linear_of(*this, f, expert); }
const Linear& LayerWeights::linear(Field f, int expert) const { return linear_of(*this, f, expert); }

void LayerWeights::fail_expert_count() { fail("layer's expert count differs from the model's num_experts"); }
Tensor& LayerWeights::norm(Field f) { return norm_of(*this, f); }
const Tensor& LayerWeights::norm(Field f) const { return norm_of(*this, f); }

std::vector<SiteGroup<false>> site_consumers(LayerWeights& w) { return sites_of<false>(w); }
std::vector<SiteGroup<true>> site_consumers(const LayerWeights& w) { return sites_of<true>(w); }

}  // namespace kt
