// crossquant (Liu et al. 2024): activations quantized with a per-element scale
// t_i^alpha * c_j^(1-alpha) (t_i: the token's absmax, c_j: the channel's calibration absmax).
// The weights are untouched; the column maxima are recorded as recipe tensors
// "cq.L.SITE.colmax" and used online (fake quantization only).
#include "quant/method.h"

namespace kt {

namespace {

void visit_crossquant(Recipe& r, OptionVisitor& v) {
  // Set by the method (prepare), not an option; recorded for the loader.
  v.flag(r.crossquant, false, {"enabled", nullptr, "CrossQuant activation scales"});
  v.real(r.cq_alpha, 0.5, {"alpha", "--cq-alpha", "crossquant exponent (1 = per-token)"}, {0, 1});  // UNVERIFIED default
}

class Crossquant : public Method {
 public:
  Needs needs() const override {
    Needs n;
    n.layer_stats = true;
    return n;
  }
  void prepare(Model&, const Windows&, Rotations&, MethodContext& ctx) override { ctx.recipe.crossquant = true; }
  void transform_layer(int l, LayerWeights& w, const LayerStats& st, MethodContext& ctx) override {
    for (const auto& g : site_consumers(w)) {
      const Site site = g.site;
      std::vector<float> c(st.absmax[(int)site].begin(), st.absmax[(int)site].end());
      ctx.recipe.tensors[site_tensor_name("cq", l, site, "colmax")] = Tensor::from(c);
      ctx.online->set_crossquant_colmax(l, site, std::move(c));
    }
  }
};

}  // namespace

extern const OptionSection kCrossquantOptions = {"crossquant", visit_crossquant, /*in_every_recipe=*/true};
std::unique_ptr<Method> make_crossquant() { return std::make_unique<Crossquant>(); }

}  // namespace kt
