// Activation sites of a decoder layer: where hooks see activations and what site_consumers
// (model/model.h) groups the linears by. Kept apart from forward.h so weights-only code can
// name a site without the forward pass.
#pragma once

namespace kt {

// Activation sites, in the order they occur in a layer.
enum class Site {
  AttnIn,    // normed input of q/k/v_proj      [rows, hidden]
  Q,         // queries after RoPE               [rows, n_heads*head_dim]
  K,         // keys after RoPE (what is cached) [rows, n_kv*head_dim]
  V,         // values (what is cached)          [rows, n_kv*head_dim]
  OIn,       // attention output, input of o_proj [rows, n_heads*head_dim]
  MlpIn,     // normed input of gate/up_proj     [rows, hidden]
  DownIn,    // silu(gate)*up, input of down_proj [rows, ffn]
  LmHeadIn,  // final-normed input of lm_head    [rows, hidden] (layer = n_layers)
};
const char* site_name(Site s);  // defined in model/forward.cc
constexpr int kNumSites = 8;

}  // namespace kt
