#include "core/spec.h"

#include <cmath>

#include "util/error.h"

namespace kt {

void set_family_math(ModelSpec& s) {
  if (s.arch == "gemma" || s.arch == "gemma2") {
    s.act = Act::GeluTanh;
    s.norm_offset = 1.0f;
    s.embed_scale = (float)std::sqrt((double)s.hidden);
  }
}

float ModelSpec::attn_scale() const {
  // the head_dim form in float, as it always was computed (bit-identical for the other families)
  if (query_pre_attn_scalar > 0) return (float)(1.0 / std::sqrt(query_pre_attn_scalar));
  return 1.0f / std::sqrt((float)head_dim);
}

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
  req(query_pre_attn_scalar >= 0 && query_pre_attn_scalar < 1e12, "query_pre_attn_scalar must be positive");
  req(attn_softcap >= 0 && final_softcap >= 0 && std::isfinite(attn_softcap) && std::isfinite(final_softcap),
      "attn_logit_softcapping and final_logit_softcapping must be positive");
  req(sliding_window >= 0, "sliding_window must not be negative");
  req(layer_slides.empty() || layer_slides.size() == (size_t)n_layers, "layer_types must list every layer");
  if (moe()) {
    req(n_experts <= 1024 && top_k > 0 && top_k <= n_experts, "num_experts_per_tok must be in 1..num_experts (at most 1024)");
    req(moe_ffn > 0 && moe_ffn <= (1 << 22) && shared_ffn >= 0 && shared_ffn <= (1 << 22),
        "expert intermediate sizes must be positive and plausible");
  }
  const RopeScaling& r = rope_scaling;
  if (!r.type.empty()) {
    req(r.factor > 0 && r.original_max_position > 0 && r.attention_factor >= 0, "rope scaling factors must be positive");
    req(r.low_freq_factor > 0 && r.high_freq_factor > r.low_freq_factor, "llama3 rope scaling needs 0 < low_freq_factor < high_freq_factor");
    req(r.beta_fast > 0 && r.beta_slow > 0, "yarn beta_fast and beta_slow must be positive");
  }
  if (r.type == "longrope") {
    req(r.short_factor.size() == (size_t)head_dim / 2 && r.long_factor.size() == (size_t)head_dim / 2,
        "longrope short_factor and long_factor need head_dim / 2 = " + std::to_string(head_dim / 2) + " values each");
    for (const auto* v : {&r.short_factor, &r.long_factor})
      for (double f : *v) req(f > 0 && f < 1e12, "longrope factors must be positive");
  }
}

}  // namespace kt
