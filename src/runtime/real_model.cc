#include "runtime/real_model.h"

#include <algorithm>

#include "kernels/packed.h"
#include "model/pack_linear.h"
#include "util/error.h"

namespace kt {

bool recipe_runs_on_kernels(const Recipe& r, std::string* why) {
  if (!r.a.enabled()) return *why = "activations are not quantized (A16): no integer GEMM", false;
  if (!r.a.symmetric) return *why = "asymmetric activations are not supported by the kernels", false;
  if (r.a.bits < 2 || r.a.bits > 8) return *why = "activation bits must be 2..8 (int8 codes)", false;
  if (r.a.gran != Granularity::PerRow) return *why = "activations must be per-token", false;
  if (r.crossquant) return *why = "CrossQuant per-element scales are fake-quant only", false;
  return true;
}

PackReport pack_model_for_kernels(Model& m, const Recipe& r, bool drop_fp32) {
  PackReport rep;
  if (!recipe_runs_on_kernels(r, &rep.why_not)) return rep;
  for (int l = 0; l < m.spec.n_layers; l++) {
    LayerWeights w = *m.layer(l);
    w.for_each_linear([&](LinearId, Linear& li) {
      Linear* lin = &li;
      rep.fp32_bytes += (size_t)lin->out() * lin->in() * 4;
      if (lin->packed) {  // loaded packed from disk
        lin->act_bits = r.a.bits;
        lin->act_clip = r.a.clip_ratio;
        rep.packed_bytes += lin->packed->bytes();
        rep.packed++;
        return;
      }
      auto p = pack_linear(*lin, m.path, "layer " + std::to_string(l));  // null: no packed form
      if (!p) {
        rep.skipped++;
        return;
      }
      rep.packed_bytes += p->bytes();
      lin->packed = p;
      lin->act_bits = r.a.bits;
      lin->act_clip = r.a.clip_ratio;
      if (drop_fp32) {
        lin->w.data.clear();
        lin->w.data.shrink_to_fit();
      }
      rep.packed++;
    });
    m.set_layer(l, std::move(w));
  }
  // The head (quant_lm_head) with its own input quantizer, when that one runs on the kernels.
  const QuantSpec ha = r.lm_head_a();
  std::string why;
  Recipe head_only = r;
  head_only.a = ha;
  if (r.quant_lm_head && !m.tied() && recipe_runs_on_kernels(head_only, &why)) {
    Linear& h = m.lm_head;
    if (!h.packed) h.packed = pack_linear(h, m.path, "lm_head");  // null: no packed form
    if (h.packed) {
      h.act_bits = ha.bits;
      h.act_clip = ha.clip_ratio;
      rep.packed_bytes += h.packed->bytes();
      rep.fp32_bytes += (size_t)h.out() * h.in() * 4;
      rep.packed++;
      if (drop_fp32) {
        h.w.data.clear();
        h.w.data.shrink_to_fit();
      }
    }
  }
  return rep;
}

bool kv_cache_supported(const Recipe& r, const ModelSpec& s) {
  const QuantSpec& k = r.k;
  return k.enabled() && k.bits <= 8 && k.gran == Granularity::PerGroup && k.group == s.head_dim;
}

OnlineCaps kernel_caps(const Model& m, const PackReport& pack, bool quantized_kv) {
  OnlineCaps c;
  c.linears_quantize_inputs = pack.packed > 0;
  // R3 on K: the quantized K/V cache applies it per head as it quantizes (decoder_layer asks
  // the plan for it); Q is still rotated by the plan's hook.
  c.cache_quantizes_kv = c.cache_applies_r3 = quantized_kv;
  c.down_linears_apply_r4 = c.linears_quantize_inputs;
  c.head_quantizes_input = m.lm_head.packed && m.lm_head.act_bits > 0;
  const std::vector<int> widths = m.spec.down_widths();
  for (int l = 0; l < m.spec.n_layers && c.down_linears_apply_r4; l++)
    for (const auto& g : site_consumers(*m.layer(l)))
      if (g.site == Site::DownIn)
        for (const Linear* d : g.lins())
          if (!d->packed || d->act_bits == 0 || std::find(widths.begin(), widths.end(), (int)d->in()) == widths.end())
            c.down_linears_apply_r4 = false;
  return c;
}

bool fuse_online_rotations(Model& m, const OnlinePlan& plan) {
  if (plan.r4_in_down_linears()) {
    for (int l = 0; l < m.spec.n_layers; l++) {
      LayerWeights w = *m.layer(l);
      for (auto& g : site_consumers(w))
        if (g.site == Site::DownIn)
          for (Linear* d : g.lins()) d->act_pre = plan.r4_rows((int)d->in());
      m.set_layer(l, std::move(w));
    }
  }
  return plan.r4_in_down_linears() || plan.r3_in_kv_cache();
}

Session kernel_session(std::shared_ptr<Model> m, const Recipe& r, const PackReport& pack, bool quantized_kv) {
  auto plan = plan_online(r, m->spec, kernel_caps(*m, pack, quantized_kv));
  fuse_online_rotations(*m, *plan);
  return Session(std::move(m), r, std::move(plan));
}

void unpack_model(Model& m) {
  for (int l = 0; l < m.spec.n_layers; l++) {
    LayerWeights w = *m.layer(l);
    bool any = false;
    w.for_each_linear([&](LinearId, Linear& lin) { any = unpack_linear(lin) || any; });
    if (any) m.set_layer(l, std::move(w));
  }
  unpack_linear(m.lm_head);
}

}  // namespace kt
