// Architecture description of a decoder-only transformer of the families kurtail reads (the
// Llama graph with per-family math: core/arch.h has the tensors, model/forward.cc the graph).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kt {

// Two RoPE conventions exist in the wild. HF checkpoints rotate (x[i], x[i+d/2]) pairs
// ("rotate_half"); llama2.c and Meta's original code rotate adjacent (x[2i], x[2i+1]) pairs.
enum class RopeStyle { RotateHalf, Interleaved };

// RoPE frequency scaling as transformers' modeling_rope_utils computes it (model/rope.h has the
// math). Fields a type does not use keep their defaults.
struct RopeScaling {
  // "" (none), "linear", "dynamic" (NTK; only for forwards past max_pos), "yarn", "llama3", "longrope"
  std::string type;
  double factor = 1.0, low_freq_factor = 1.0, high_freq_factor = 4.0;
  int original_max_position = 8192;
  double attention_factor = 0;  // yarn, longrope: 0 = derived from factor as transformers does
  double beta_fast = 32, beta_slow = 1, mscale = 0, mscale_all_dim = 0;  // yarn
  bool truncate = true;                                                  // yarn
  std::vector<double> short_factor, long_factor;  // longrope: head_dim / 2 each
};

// The MLP's gate activation: SwiGLU (Llama family) or GeGLU with the tanh GELU (Gemma).
enum class Act { SiLU, GeluTanh };

struct ModelSpec {
  std::string arch = "llama";  // an ArchTable's name (core/arch.cc): llama, mistral, qwen2, qwen3, gemma, gemma2, mixtral, qwen2_moe, phi3
  int hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, ffn = 0, vocab = 0;
  int max_pos = 2048;
  double rms_eps = 1e-5, rope_theta = 10000.0;
  RopeStyle rope_style = RopeStyle::RotateHalf;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  bool attn_qkv_bias = false;  // Qwen2
  bool attn_o_bias = false;
  bool mlp_bias = false;
  Act act = Act::SiLU;
  // Gemma: RMSNorm computes x_norm * (1 + w), so its HF checkpoints store w = multiplier - 1.
  // kurtail holds every norm as the multiplier; HF load adds norm_offset, HF save subtracts it
  // (GGUF stores the multiplier, as llama.cpp's converter writes it).
  float norm_offset = 0.0f;
  // Gemma multiplies the embedding output by sqrt(hidden) (HF: the fp32 value when run in fp32).
  float embed_scale = 1.0f;
  // Mixture of experts (Mixtral, Qwen2-MoE): every layer's MLP is n_experts experts of width
  // moe_ffn, a router picks top_k of them per token (softmax, then the top k, renormalised to
  // sum 1 when norm_topk_prob), plus, when shared_ffn > 0, a shared expert on every token scaled
  // by sigmoid(shared_expert_gate x). n_experts == 0: a dense MLP of width ffn.
  int n_experts = 0, top_k = 0, moe_ffn = 0, shared_ffn = 0;
  bool norm_topk_prob = false;
  // Gemma 2: attention scores are scaled by query_pre_attn_scalar^-0.5 (0: head_dim^-0.5) and
  // soft-capped as c tanh(s / c) before the mask (attn_softcap c, 0: none); the final logits
  // likewise (final_softcap). Its layers have post-norms (core/arch.cc rows PostAttnNorm, PostMlpNorm).
  double query_pre_attn_scalar = 0;
  float attn_softcap = 0.0f, final_softcap = 0.0f;
  int sliding_window = 0;  // 0: full causal attention
  // Which layers use sliding_window (Qwen2 from max_window_layers on; `layer_types`); empty: all.
  std::vector<uint8_t> layer_slides;
  int bos_id = 1;
  std::vector<int> eos_ids = {2};

  // Attention window of layer l: 0 = full causal; w > 0: query i sees keys i-w < j <= i.
  int window(int l) const {
    return sliding_window > 0 && (layer_slides.empty() || layer_slides[(size_t)l]) ? sliding_window : 0;
  }
  bool moe() const { return n_experts > 0; }
  // The widths of the down_proj inputs (R4's sizes): ffn, or the experts' and the shared
  // expert's; the first is the one a recipe records R4's kind for.
  std::vector<int> down_widths() const {
    if (!moe()) return {ffn};
    if (shared_ffn > 0 && shared_ffn != moe_ffn) return {moe_ffn, shared_ffn};
    return {moe_ffn};
  }
  // The factor attention scores are multiplied by before the soft-cap and the softmax.
  float attn_scale() const;
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // Validates internal consistency; throws kt::Error naming `where`.
  void validate(const std::string& where) const;
};

// Sets the spec fields a family implies whatever its config says (Gemma: GeGLU with the tanh
// GELU, (1 + w) norms, embeddings times sqrt(hidden)); call once arch and hidden are known.
void set_family_math(ModelSpec& s);

}  // namespace kt
