// smoothquant (Xiao et al. 2023) and the smooth-then-rotate variants: per-channel scales
// s_j = max|X_j|^alpha / max|W_j|^(1-alpha) move activation outliers into the weights
// (transform/smooth.h). Three registry lines share this file:
//   smoothquant, smoothrot-all: the q/k/v and gate/up inputs (folded into the norms) and the
//     down_proj input (folded into up_proj); smoothrot-all's recipe adds online input Hadamards.
//   smoothrot: only the down_proj input, before R4 (QuaRot's R1/R2 already spread the rest).
#include "quant/method.h"
#include "transform/smooth.h"

namespace kt {

namespace {

void visit_smoothing(Recipe& r, OptionVisitor& v) {
  v.real(r.smooth_alpha, 0.5, {"alpha", "--alpha", "smoothquant / smoothrot migration strength"}, {0, 1});
  // Set by the method (smoothrot-all's registry line), not an option; recorded for the loader.
  v.flag(r.online_had_inputs, false, {"online_hadamard_inputs", nullptr, "online Hadamard before every linear input"});
}

std::vector<const Linear*> as_const(const std::vector<Linear*>& v) { return {v.begin(), v.end()}; }

class Smooth : public Method {
 public:
  explicit Smooth(bool inputs) : inputs_(inputs) {}
  Needs needs() const override {
    Needs n;
    n.layer_stats = true;
    return n;
  }
  void transform_layer(int, LayerWeights& w, const LayerStats& st, MethodContext& ctx) override {
    const double alpha = ctx.recipe.smooth_alpha;
    for (auto& g : site_consumers(w)) {
      const auto lins = g.lins();
      if (g.norm && inputs_)  // q/k/v and gate/up: the scales go into the norm that feeds them
        smooth_into_norm(*g.norm, lins, smooth_scales(st.absmax[(int)g.site], as_const(lins), alpha));
      if (g.site == Site::DownIn)  // no norm feeds down_proj: the scales go into up_proj's rows
        smooth_down_via_up(w, smooth_scales(st.absmax[(int)g.site], as_const(lins), alpha));
    }
  }

 private:
  bool inputs_;  // also smooth the q/k/v and gate/up inputs
};

}  // namespace

extern const OptionSection kSmoothingOptions = {"smoothing", visit_smoothing, /*in_every_recipe=*/true};
std::unique_ptr<Method> make_smoothquant() { return std::make_unique<Smooth>(true); }
std::unique_ptr<Method> make_smoothrot() { return std::make_unique<Smooth>(false); }

}  // namespace kt
