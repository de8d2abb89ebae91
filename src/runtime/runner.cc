#include "runtime/runner.h"

#include "kernels/packed.h"
#include "quant/pipeline.h"
#include "quant/validate_model.h"
#include "util/error.h"

namespace kt {

std::string RealModel::describe() const {
  const Recipe* r = session.recipe();
  if (!r) return "fp32 (OpenBLAS)";
  std::string s = r->method + " W" + std::to_string(r->w.bits) + "A" + std::to_string(r->a.bits) + "KV" +
                  std::to_string(r->k.bits);
  if (pack.packed) s += std::string(", int kernels ") + kernel_name(active_kernel());
  else s += ", fake-quant (" + pack.why_not + ")";
  if (session.quantizes_kv_cache()) s += ", int" + std::to_string(session.kv_k().bits) + " KV cache";
  return s;
}

RealModel attach_real(std::unique_ptr<Model> m, const Recipe& r) {
  RealModel rm;
  rm.pack = pack_model_for_kernels(*m, r, /*drop_fp32=*/true);
  const bool kv = kv_cache_supported(r, m->spec);
  rm.session = kernel_session(std::move(m), r, rm.pack, kv);
  return rm;
}

RealModel load_real(const std::string& path) {
  std::optional<Recipe> r;
  auto m = open_model(path, -1, "", &r);  // validates the recipe once
  if (r) return attach_real(std::move(m), *r);
  RealModel rm;
  rm.session = Session(std::shared_ptr<const Model>(std::move(m)));
  return rm;
}

RealModel make_real(const std::string& path, const std::string& method, int wbits, int abits, int kvbits,
                    int lm_head_bits) {
  auto m = open_model(path);
  if (wbits >= 16 && abits >= 16 && kvbits >= 16) {
    RealModel rm;
    rm.session = Session(std::shared_ptr<const Model>(std::move(m)));
    return rm;
  }
  QuantizeOptions o;
  o.progress = false;
  if (method != "rtn" && method != "quarot") fail("bench: --method must be rtn or quarot");
  o.recipe.set_method(method);
  o.recipe.set_bits(wbits, abits, kvbits, m->spec.head_dim);
  o.recipe.quant_lm_head = lm_head_bits > 0;
  o.recipe.lm_head_bits = lm_head_bits;
  o.recipe.w.mse_search = false;  // speed benchmarks: the clip search does not change the kernels
  quantize_model(*m, o);
  return attach_real(std::move(m), o.recipe);
}

}  // namespace kt
