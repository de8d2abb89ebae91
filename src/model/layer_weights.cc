// LayerWeights' field accessors and site_consumers: the only place that maps table fields and
// activation sites to the members of the Llama layer.
#include <string>

#include "model/model.h"
#include "util/error.h"

namespace kt {

namespace {

template <class LW>
auto& linear_of(LW& w, Field f) {
  switch (f) {
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
  v.push_back(G{Site::MlpIn, &w.mlp_norm, Field::MlpNorm, {{Field::Gate, &w.gate}, {Field::Up, &w.up}}, false});
  v.push_back(G{Site::DownIn, nullptr, Field::MlpNorm, {{Field::Down, &w.down}}, true});
  return v;
}

}  // namespace

Linear& LayerWeights::linear(Field f) { return linear_of(*this, f); }
const Linear& LayerWeights::linear(Field f) const { return linear_of(*this, f); }
Tensor& LayerWeights::norm(Field f) { return norm_of(*this, f); }
const Tensor& LayerWeights::norm(Field f) const { return norm_of(*this, f); }

std::vector<SiteGroup<false>> site_consumers(LayerWeights& w) { return sites_of<false>(w); }
std::vector<SiteGroup<true>> site_consumers(const LayerWeights& w) { return sites_of<true>(w); }

}  // namespace kt
