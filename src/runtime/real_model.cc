#include "runtime/real_model.h"

#include <cmath>

#include "kernels/packed.h"
#include "util/error.h"

namespace kt {

bool recipe_runs_on_kernels(const Recipe& r, std::string* why) {
  if (!r.a.enabled()) return *why = "activations are not quantized (A16): no integer GEMM", false;
  if (!r.a.symmetric) return *why = "asymmetric activations are not supported by the kernels", false;
  if (r.a.bits != 4 && r.a.bits != 8) return *why = "activation bits must be 4 or 8", false;
  if (r.a.gran != Granularity::PerRow) return *why = "activations must be per-token", false;
  if (r.crossquant) return *why = "CrossQuant per-element scales are fake-quant only", false;
  return true;
}

PackReport pack_model_for_kernels(Model& m, const Recipe& r, bool drop_fp32) {
  PackReport rep;
  if (!recipe_runs_on_kernels(r, &rep.why_not)) return rep;
  for (int l = 0; l < m.spec.n_layers; l++) {
    LayerWeights w = *m.layer(l);
    w.for_each_linear([&](Field, Linear& li) {
      Linear* lin = &li;
      rep.fp32_bytes += (size_t)lin->out() * lin->in() * 4;
      if (lin->packed) {  // loaded packed from disk
        lin->act_bits = r.a.bits;
        lin->act_clip = r.a.clip_ratio;
        rep.packed_bytes += lin->packed->bytes();
        rep.packed++;
        return;
      }
      if (lin->qscale.empty() || (lin->qbits != 4 && lin->qbits != 8)) {
        rep.skipped++;
        return;
      }
      const int N = (int)lin->out(), K = (int)lin->in(), G = (int)lin->qscale.dim(1), group = K / G;
      if (G > 1 && group % 8) {
        rep.skipped++;
        return;
      }
      std::vector<int8_t> q((size_t)N * K);
      const int lo = lin->qbits == 4 ? -8 : -128, hi = lin->qbits == 4 ? 7 : 127;
      for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
          float s = lin->qscale.data[(size_t)n * G + k / group];
          const float wv = lin->w.data[(size_t)n * K + k];
          float v = s != 0 ? wv / s : (wv == 0 ? 0.0f : NAN);  // scale 0 only fits an all-zero group
          float rv = std::nearbyint(v);
          if (!(std::fabs(v - rv) <= 1e-3f) || rv < lo || rv > hi)  // NaN fails too
            fail(m.path, "layer " + std::to_string(l) + ": weights are not on their recorded integer grid");
          q[(size_t)n * K + k] = (int8_t)rv;
        }
      auto p = std::make_shared<PackedWeight>(pack_weights_ref(lin->qbits == 4 ? QType::Q4 : QType::Q8, q.data(), N, K,
                                                               G > 1 ? group : 0, lin->qscale.ptr()));
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
  return rep;
}

bool fuse_online_rotations(Model& m, RecipeHooks& hooks) {
  // R3 on K: the quantized K/V cache applies it per head as it quantizes (decoder_layer asks
  // the hook for it); Q is still rotated by the hook.
  // The hook applies R3 before any site transform of K; deferring R3 would swap the two.
  if (hooks.recipe().r3 && hooks.cache_quantizes_kv && !hooks.has_site_transform(Site::K)) hooks.r3_in_kv_cache = true;
  if (!hooks.r4() || !hooks.linears_quantize_inputs) return hooks.r3_in_kv_cache;
  for (int l = 0; l < m.spec.n_layers; l++) {
    const Linear& d = m.layer(l)->down;
    if (!d.packed || d.act_bits == 0 || d.in() != hooks.r4()->n()) return hooks.r3_in_kv_cache;
  }
  auto pre = std::make_shared<const RotationRows>(hooks.r4());
  for (int l = 0; l < m.spec.n_layers; l++) {
    LayerWeights w = *m.layer(l);
    w.down.act_pre = pre;
    m.set_layer(l, std::move(w));
  }
  hooks.r4_in_down_linears = true;
  return true;
}

void unpack_model(Model& m) {
  for (int l = 0; l < m.spec.n_layers; l++) {
    LayerWeights w = *m.layer(l);
    bool any = false;
    w.for_each_linear([&](Field, Linear& lin) {
      if (lin.packed && lin.w.data.empty()) {
        lin.w.data = dequantize_packed(*lin.packed);
        lin.packed.reset();
        any = true;
      }
    });
    if (any) m.set_layer(l, std::move(w));
  }
}

}  // namespace kt
