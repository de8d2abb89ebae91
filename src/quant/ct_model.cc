#include "quant/ct_model.h"

#include <cmath>

#include "io/tokenizer.h"
#include "quant/validate_model.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

Recipe recipe_for_compressed_tensors(const CtQuant& q, const ModelSpec& s, const std::string& path) {
  Recipe r;
  r.set_method(q.r4 ? "quarot" : "rtn");
  r.r1 = r.r2 = r.r3 = false;
  r.r4 = q.r4;
  r.r4_seed = r.seed + 4;  // what the writer derives; only a fallback construction would read it
  r.w.bits = q.w_bits;
  r.w.symmetric = true;
  r.w.gran = q.w_group > 0 ? Granularity::PerGroup : Granularity::PerRow;
  r.w.group = q.w_group;
  r.w.scale_f16 = q.scales_f16;
  if (q.a_bits < 16) {
    r.a.bits = q.a_bits;
    r.a.symmetric = true;
    r.a.gran = Granularity::PerRow;
    r.a.clip_ratio = 1.0f;
  }
  if (q.r4) {
    const int n = s.down_widths()[0];
    if (q.r4_type == "hadamard") {
      // Sylvester blocks of head_dim (the whole width without one)
      const int b = q.r4_block > 0 ? q.r4_block : n;
      if ((b & (b - 1)) != 0)
        fail(path, "transform of type 'hadamard' on a width of " + std::to_string(b) + ", which is no power of two");
      r.r4_block = b;
    } else {
      // the dense matrix must be kurtail's full Hadamard of this width: the plan rebuilds that one
      const Tensor want = Rotation::hadamard(n, false, r.r4_seed).matrix();
      const float root = std::sqrt((float)n);
      bool same = q.r4_matrix.shape == want.shape;
      for (size_t i = 0; same && i < want.data.size(); i++) same = q.r4_matrix.data[i] == std::nearbyint(want.data[i] * root);
      if (!same)
        fail(path, "the online transform (type " + quote(q.r4_type) + ") is not the Hadamard matrix kurtail builds for "
                       "width " + std::to_string(n) + "; other dense R4 matrices are not supported");
      r.r4_block = 0;
    }
    r.r4_kind = "hadamard";
  }
  validate_recipe(r, path);
  return r;
}

std::unique_ptr<Model> open_compressed_tensors(const std::string& dir, const std::string& tokenizer_path,
                                               std::optional<Recipe>* recipe) {
  CtModel ct = read_compressed_tensors(dir);
  Recipe r = recipe_for_compressed_tensors(ct.quant, ct.spec, join_path(dir, "config.json"));
  auto m = Model::from_source(ct.spec, ct.tensors, /*resident=*/true);
  m->path = dir;
  const std::string tp = tokenizer_path.empty() ? dir : tokenizer_path;
  m->tokenizer = tokenizer_path.empty() ? load_hf_tokenizer(dir) : load_sentencepiece(tokenizer_path);
  m->tokenizer_path = tp;
  if (recipe) *recipe = std::move(r);
  return m;
}

}  // namespace kt
