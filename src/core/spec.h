// Architecture description of a Llama-family decoder (Llama, Mistral, Qwen2 share this graph).
#pragma once
#include <string>
#include <vector>

namespace kt {

// Two RoPE conventions exist in the wild. HF checkpoints rotate (x[i], x[i+d/2]) pairs
// ("rotate_half"); llama2.c and Meta's original code rotate adjacent (x[2i], x[2i+1]) pairs.
enum class RopeStyle { RotateHalf, Interleaved };

struct RopeScaling {
  std::string type;  // "" (none) or "llama3"
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_position = 8192;
};

struct ModelSpec {
  std::string arch = "llama";  // llama | mistral | qwen2
  int hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  int max_pos = 2048;
  double rms_eps = 1e-5, rope_theta = 10000.0;
  RopeStyle rope_style = RopeStyle::RotateHalf;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  bool attn_qkv_bias = false;  // Qwen2
  bool attn_o_bias = false;
  bool mlp_bias = false;
  int sliding_window = 0;  // 0: full causal attention
  int bos_id = 1;
  std::vector<int> eos_ids = {2};

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Validates internal consistency; throws kt::Error naming `where`.
  void validate(const std::string& where) const;
};


}  // namespace kt
