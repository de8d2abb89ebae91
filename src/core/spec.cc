#include "core/spec.h"

#include "util/error.h"

namespace kt {

void ModelSpec::validate(const std::string& where) const {
  auto req = [&](bool ok, const std::string& what) {
    if (!ok) fail(where, what);
  };
  req(hidden > 0 && n_layers > 0 && n_heads > 0 && n_kv_heads > 0 && head_dim > 0 && ffn > 0 && vocab > 0,
      "model dimensions must all be positive");
  req(hidden <= (1 << 20) && ffn <= (1 << 22) && vocab <= (1 << 24) && n_layers <= 4096 && head_dim <= 4096,
      "model dimensions are implausibly large");
  req(n_heads % n_kv_heads == 0, "num_attention_heads must be a multiple of num_key_value_heads");
  req(head_dim % 2 == 0, "head_dim must be even for RoPE");
  req(max_pos > 0, "max_position_embeddings must be positive");
  req(rms_eps > 0 && rope_theta > 0, "rms_norm_eps and rope_theta must be positive");
}

}  // namespace kt
