#include "quant/validate_model.h"
#include "runtime/runner.h"

#include "quant/pipeline.h"
#include "kernels/packed.h"
#include "util/error.h"

namespace kt {

std::string RealModel::describe() const {
  if (!hooks) return "fp32 (OpenBLAS)";
  std::string s = recipe.method + " W" + std::to_string(recipe.w.bits) + "A" + std::to_string(recipe.a.bits) + "KV" +
                  std::to_string(recipe.k.bits);
  if (pack.packed) s += std::string(", int kernels ") + kernel_name(active_kernel());
  else s += ", fake-quant (" + pack.why_not + ")";
  if (kv_k.enabled()) s += ", int" + std::to_string(kv_k.bits) + " KV cache";
  return s;
}

void attach_real(RealModel& rm) {
  rm.pack = pack_model_for_kernels(*rm.model, rm.recipe, /*drop_fp32=*/true);
  if (rm.pack.packed > 0) rm.hooks->linears_quantize_inputs = true;
  const QuantSpec& k = rm.recipe.k;
  if (k.enabled() && k.bits <= 8 && k.gran == Granularity::PerGroup && k.group == rm.model->spec.head_dim) {
    rm.kv_k = rm.recipe.k;
    rm.kv_v = rm.recipe.v;
    rm.hooks->cache_quantizes_kv = true;
  }
  fuse_online_rotations(*rm.model, *rm.hooks);
}

RealModel load_real(const std::string& path) {
  RealModel rm;
  rm.model = open_model(path);
  rm.hooks = load_recipe_hooks(path, rm.model->spec, &rm.recipe);
  if (rm.hooks) attach_real(rm);
  return rm;
}

RealModel make_real(const std::string& path, const std::string& method, int wbits, int abits, int kvbits) {
  RealModel rm;
  rm.model = open_model(path);
  if (wbits >= 16 && abits >= 16 && kvbits >= 16) return rm;
  QuantizeOptions o;
  o.progress = false;
  if (method != "rtn" && method != "quarot") fail("bench: --method must be rtn or quarot");
  o.recipe.set_method(method);
  o.recipe.set_bits(wbits, abits, kvbits, rm.model->spec.head_dim);
  o.recipe.w.mse_search = false;  // speed benchmarks: the clip search does not change the kernels
  quantize_model(*rm.model, o);
  rm.recipe = o.recipe;
  rm.hooks = std::make_unique<RecipeHooks>(rm.recipe, rm.model->spec);
  attach_real(rm);
  return rm;
}

}  // namespace kt
