// duquant (Lin et al. 2024): per linear-input site, smoothing, a greedy block rotation, a
// zigzag permutation and a second block rotation (transform/duquant.h). The transform is
// folded into the consuming weights and applied online to the activations; its parts are
// recorded as recipe tensors "site.L.SITE.{smooth,rot_a,rot_b,perm}".
#include "quant/method.h"
#include "transform/duquant.h"

namespace kt {

namespace {

void visit_duquant(Recipe& r, OptionVisitor& v) {
  v.real(r.dq_alpha, 0.6, {"alpha", nullptr, "DuQuant smoothing alpha (Llama-2-7B run.sh)"}, {0, 1});
  v.integer(r.dq_block, 128, {"block", nullptr, "DuQuant rotation block size"}, {1, 65536});
  v.integer(r.dq_steps, 256, {"steps", nullptr, "DuQuant greedy rotation steps"}, {0, 100000});
  v.flag(r.dq_permute, true, {"permute", nullptr, "DuQuant zigzag permutation"});
}

class Duquant : public Method {
 public:
  Needs needs() const override {
    Needs n;
    n.layer_stats = true;
    n.sample_rows = 512;
    n.fold_norms = true;
    return n;
  }
  void transform_layer(int l, LayerWeights& w, const LayerStats& st, MethodContext& ctx) override {
    Recipe& r = ctx.recipe;
    DuQuantOptions dq{r.dq_alpha, r.dq_block, r.dq_steps, r.dq_permute};
    for (auto& g : site_consumers(w)) {
      const Site site = g.site;
      std::vector<Linear*> cons = g.lins();
      const int n = (int)cons[0]->in();
      const auto& X = st.sample[(int)site];
      SiteTransform t = build_duquant(X, (int64_t)X.size() / n, n, st.absmax[(int)site],
                                      std::vector<const Linear*>(cons.begin(), cons.end()), dq);
      for (Linear* c : cons) t.apply_to_weight(*c);
      if (!t.smooth.empty()) r.tensors[site_tensor_name("site", l, site, "smooth")] = Tensor::from(t.smooth);
      if (!t.rot_a.empty()) r.tensors[site_tensor_name("site", l, site, "rot_a")] = t.rot_a;
      if (!t.rot_b.empty()) r.tensors[site_tensor_name("site", l, site, "rot_b")] = t.rot_b;
      if (!t.perm.empty())
        r.tensors[site_tensor_name("site", l, site, "perm")] =
            Tensor::from(std::vector<float>(t.perm.begin(), t.perm.end()));
      ctx.online->set_site_transform(l, site, std::move(t));
    }
  }
};

}  // namespace

extern const OptionSection kDuquantOptions = {"duquant", visit_duquant, /*in_every_recipe=*/true};
std::unique_ptr<Method> make_duquant() { return std::make_unique<Duquant>(); }

}  // namespace kt
