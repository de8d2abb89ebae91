// config.json -> ModelSpec. Kept in its own .cc so nlohmann/json stays out of headers.
#include <algorithm>
#include <map>
#include <tuple>
#include <nlohmann/json.hpp>

#include "io/json_checked.h"
#include "io/hf_config.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

using json = nlohmann::json;

namespace {

// Numbers go through json_number (range-checked); strings and bools through nlohmann.
template <class T>
T get_or(const json& j, const char* key, T dflt, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) return json_number<T>(j[key], path, key);
  else return j[key].get<T>();
}

// Reads the RoPE settings in either layout: transformers 4 (top-level rope_theta, rope_scaling
// with `type` or `rope_type`) or transformers 5 (everything under rope_parameters). Every field
// that changes the math is read; a field kurtail does not implement is refused, never ignored.
void read_rope(const json& j, ModelSpec& s, const std::string& path) {
  const bool v5 = j.contains("rope_parameters") && !j["rope_parameters"].is_null();
  const bool v4 = j.contains("rope_scaling") && !j["rope_scaling"].is_null();
  if (v5 && v4) fail(path, "both rope_parameters and rope_scaling are set; keep one");
  static const json kEmpty = json::object();
  const json& r = v5 ? j["rope_parameters"] : v4 ? j["rope_scaling"] : kEmpty;
  const std::string where = v5 ? "rope_parameters" : "rope_scaling";
  if (!r.is_object()) fail(path, where + " must be an object, not " + json_type_name(r));
  for (auto it = r.begin(); it != r.end(); ++it)
    if (it.value().is_object())
      fail(path, where + " per layer type (" + quote(it.key()) + ") is not supported");
  s.rope_theta = get_or<double>(j, "rope_theta", 10000.0, path);
  if (v5 && r.contains("rope_theta")) {
    const double t = get_or<double>(r, "rope_theta", s.rope_theta, path);
    if (j.contains("rope_theta") && t != s.rope_theta)
      fail(path, "rope_theta differs between the top level and rope_parameters");
    s.rope_theta = t;
  }
  for (const json* src : {&j, &r})
    if (get_or<double>(*src, "partial_rotary_factor", 1.0, path) != 1.0)
      fail(path, "partial_rotary_factor other than 1 is not supported");
  std::string t = r.contains("rope_type") ? get_or<std::string>(r, "rope_type", "", path) : get_or<std::string>(r, "type", "", path);
  if (t == "default") t = "";
  if (t == "su") t = "longrope";  // the name early Phi-3 configs used
  // Fields each type reads (besides rope_type/type/rope_theta/partial_rotary_factor).
  static const std::map<std::string, std::vector<std::string>> kFields = {
      {"", {}},
      {"linear", {"factor"}},
      {"dynamic", {"factor"}},
      {"llama3", {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}},
      {"yarn", {"factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow", "mscale",
                "mscale_all_dim", "truncate"}},
      {"longrope", {"factor", "short_factor", "long_factor", "original_max_position_embeddings", "attention_factor"}}};
  auto known = kFields.find(t);
  if (known == kFields.end())
    fail(path, "unsupported " + where + " type " + quote(t) + " (supported: none, linear, dynamic, yarn, llama3, longrope)");
  for (auto it = r.begin(); it != r.end(); ++it) {
    const std::string& k = it.key();
    if (k == "rope_type" || k == "type" || k == "rope_theta" || k == "partial_rotary_factor") continue;
    if (std::find(known->second.begin(), known->second.end(), k) == known->second.end() && !it.value().is_null())
      fail(path, where + " field " + quote(k) + " is not supported for rope type " + quote(t.empty() ? "default" : t));
  }
  RopeScaling& rs = s.rope_scaling;
  rs.type = t;
  if (t.empty()) return;
  auto need = [&](const char* key) {
    if (!r.contains(key) || r[key].is_null()) fail(path, where + " of type " + quote(t) + " needs " + key);
  };
  // original_max_position_embeddings: inside the rope dict or (Phi-3, transformers 4) top level;
  // Phi3Config always has it (default 4096).
  const int top_orig = get_or<int>(j, "original_max_position_embeddings", s.arch == "phi3" ? 4096 : 0, path);
  const int orig = get_or<int>(r, "original_max_position_embeddings", top_orig, path);
  if (s.arch == "phi3" && j.contains("original_max_position_embeddings") && orig != top_orig)
    fail(path, "original_max_position_embeddings differs between the top level and " + where);
  if (t == "linear" || t == "dynamic") {
    need("factor");
    rs.factor = get_or<double>(r, "factor", 1.0, path);
  } else if (t == "llama3") {
    rs.factor = get_or<double>(r, "factor", 8.0, path);
    rs.low_freq_factor = get_or<double>(r, "low_freq_factor", 1.0, path);
    rs.high_freq_factor = get_or<double>(r, "high_freq_factor", 4.0, path);
    rs.original_max_position = orig > 0 ? orig : 8192;
  } else if (t == "yarn") {
    rs.original_max_position = orig > 0 ? orig : s.max_pos;
    rs.factor = get_or<double>(r, "factor", (double)s.max_pos / rs.original_max_position, path);
    rs.attention_factor = get_or<double>(r, "attention_factor", 0.0, path);
    rs.beta_fast = get_or<double>(r, "beta_fast", 32.0, path);
    rs.beta_slow = get_or<double>(r, "beta_slow", 1.0, path);
    rs.mscale = get_or<double>(r, "mscale", 0.0, path);
    rs.mscale_all_dim = get_or<double>(r, "mscale_all_dim", 0.0, path);
    rs.truncate = get_or<bool>(r, "truncate", true, path);
  } else if (t == "longrope") {
    need("short_factor");
    need("long_factor");
    rs.original_max_position = orig > 0 ? orig : s.max_pos;
    rs.factor = get_or<double>(r, "factor", (double)s.max_pos / rs.original_max_position, path);
    // Phi-3: transformers takes the factor (for the attention factor) from max_position_embeddings
    // / original_max_position_embeddings, whatever the dict says; a different one is ambiguous.
    if (s.arch == "phi3" && rs.factor != (double)s.max_pos / rs.original_max_position)
      fail(path, where + ".factor differs from max_position_embeddings / original_max_position_embeddings, "
                         "which transformers' Phi-3 uses");
    rs.attention_factor = get_or<double>(r, "attention_factor", 0.0, path);
    for (auto [key, dst] : {std::pair{"short_factor", &rs.short_factor}, std::pair{"long_factor", &rs.long_factor}}) {
      const json& a = r[key];
      if (!a.is_array() || a.size() > 4096) fail(path, where + "." + key + " must be an array of numbers");
      for (const json& v : a) dst->push_back(json_number<double>(v, path, key));
    }
  }
}

// Which layers slide, as transformers decides: `layer_types` when given; else Qwen2 slides
// layers from max_window_layers on (only with use_sliding_window; Qwen3 alike) and Mistral
// every layer.
void read_sliding(const json& j, ModelSpec& s, const std::string& path) {
  if (s.arch == "llama" || s.arch == "gemma") return;  // their attention has no sliding window
  int window = get_or<int>(j, "sliding_window", 0, path);
  if (s.arch == "gemma2") {
    // Gemma2Config: sliding_window 4096 by default; old configs also carry sliding_window_size,
    // which transformers does not read (refused when it disagrees, so neither is guessed).
    window = !j.contains("sliding_window") ? 4096 : j["sliding_window"].is_null() ? 0 : get_or<int>(j, "sliding_window", 0, path);
    const int old = get_or<int>(j, "sliding_window_size", window, path);
    if (old != window)
      fail(path, "sliding_window (" + std::to_string(window) + ") and sliding_window_size (" + std::to_string(old) +
                     ") differ");
  }
  // the same sliding-window fields
  const bool qwen = s.arch == "qwen2" || s.arch == "qwen3" || s.arch == "qwen2_moe";
  if (qwen && !get_or<bool>(j, "use_sliding_window", false, path)) window = 0;
  if (window < 0) fail(path, "sliding_window must not be negative");
  s.sliding_window = window;
  if (j.contains("layer_types") && !j["layer_types"].is_null()) {
    const json& lt = j["layer_types"];
    if (!lt.is_array() || lt.size() != (size_t)s.n_layers)
      fail(path, "layer_types must list num_hidden_layers = " + std::to_string(s.n_layers) + " entries");
    for (const json& e : lt) {
      const std::string t = e.is_string() ? e.get<std::string>() : "";
      if (t != "full_attention" && t != "sliding_attention")
        fail(path, "unsupported layer_types entry " + (e.is_string() ? quote(t) : json_type_name(e)) +
                       " (supported: full_attention, sliding_attention)");
      s.layer_slides.push_back(t == "sliding_attention");
    }
  } else if (s.arch == "gemma2") {  // transformers 4: layers 0, 2, 4, ... slide
    for (int l = 0; l < s.n_layers; l++) s.layer_slides.push_back(l % 2 == 0);
  } else if (qwen && window > 0) {
    const int mwl = get_or<int>(j, "max_window_layers", 28, path);  // Qwen2Config's default
    for (int l = 0; l < s.n_layers; l++) s.layer_slides.push_back(l >= mwl);
  }
  if (window == 0) s.layer_slides.clear();
}

// The mixture-of-experts fields as MixtralConfig / Qwen2MoeConfig define them. Qwen2-MoE layers
// are sparse when (l + 1) % decoder_sparse_step == 0 and l is not in mlp_only_layers; kurtail
// holds one MLP kind per model, so a config with dense layers among the sparse ones is refused.
void read_experts(const json& j, ModelSpec& s, const std::string& path) {
  if (s.arch == "mixtral") {
    s.n_experts = get_or<int>(j, "num_local_experts", 8, path);
    s.top_k = get_or<int>(j, "num_experts_per_tok", 2, path);
    s.moe_ffn = s.ffn;
    s.norm_topk_prob = true;  // Mixtral always renormalises the top-k weights
    if (s.n_experts <= 0) fail(path, "num_local_experts must be positive");
  } else if (s.arch == "qwen2_moe") {
    s.n_experts = get_or<int>(j, "num_experts", 60, path);
    s.top_k = get_or<int>(j, "num_experts_per_tok", 4, path);
    s.moe_ffn = get_or<int>(j, "moe_intermediate_size", 1408, path);
    s.shared_ffn = get_or<int>(j, "shared_expert_intermediate_size", 5632, path);
    s.norm_topk_prob = get_or<bool>(j, "norm_topk_prob", false, path);
    if (s.n_experts <= 0) fail(path, "num_experts must be positive (a model without experts is Qwen2)");
    if (get_or<int>(j, "decoder_sparse_step", 1, path) != 1)
      fail(path, "unsupported decoder_sparse_step != 1 (dense layers between the sparse ones)");
    if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null() &&
        !(j["mlp_only_layers"].is_array() && j["mlp_only_layers"].empty()))
      fail(path, "unsupported mlp_only_layers (dense layers between the sparse ones)");
    if (s.shared_ffn <= 0) fail(path, "shared_expert_intermediate_size must be positive");
  }
}

// Gemma 2's attention and logit fields, with Gemma2Config's defaults (transformers 4 and 5).
void read_gemma2(const json& j, ModelSpec& s, const std::string& path) {
  s.query_pre_attn_scalar = get_or<double>(j, "query_pre_attn_scalar", 256.0, path);
  if (!(s.query_pre_attn_scalar > 0)) fail(path, "query_pre_attn_scalar must be positive");
  // null switches a soft-cap off (Gemma2Config allows it); a number must be positive
  for (auto [key, dst, dflt] : {std::tuple{"attn_logit_softcapping", &s.attn_softcap, 50.0},
                                std::tuple{"final_logit_softcapping", &s.final_softcap, 30.0}}) {
    if (j.contains(key) && j[key].is_null()) {
      *dst = 0.0f;
      continue;
    }
    const double v = get_or<double>(j, key, dflt, path);
    if (!(v > 0) || v > 1e30) fail(path, std::string(key) + " must be positive (or null for none)");
    *dst = (float)v;
  }
  if (get_or<double>(j, "attention_dropout", 0.0, path) != 0.0) fail(path, "attention_dropout other than 0 is not supported");
  // transformers 5's Gemma2 has no per-layer-type RoPE; a config that names one is refused by read_rope
}

}  // namespace

ModelSpec read_hf_config(const std::string& path) {
  json j;
  j = parse_json(read_file(path), path);
  if (!j.is_object()) fail(path, "expected a JSON object");
  ModelSpec s;
  try {
    std::string mt = get_or<std::string>(j, "model_type", "", path);
    std::string arch;
    if (j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty())
      arch = j["architectures"][0].get<std::string>();
    if (mt == "llama" || arch == "LlamaForCausalLM") {
      s.arch = "llama";
    } else if (mt == "mistral" || arch == "MistralForCausalLM") {
      s.arch = "mistral";
    } else if (mt == "qwen2" || arch == "Qwen2ForCausalLM") {
      s.arch = "qwen2";
    } else if (mt == "qwen3" || arch == "Qwen3ForCausalLM") {
      s.arch = "qwen3";
    } else if (mt == "gemma" || arch == "GemmaForCausalLM") {
      s.arch = "gemma";
    } else if (mt == "gemma2" || arch == "Gemma2ForCausalLM") {
      s.arch = "gemma2";
    } else if (mt == "phi3" || arch == "Phi3ForCausalLM") {
      s.arch = "phi3";
    } else if (mt == "mixtral" || arch == "MixtralForCausalLM") {
      s.arch = "mixtral";
    } else if (mt == "qwen2_moe" || arch == "Qwen2MoeForCausalLM") {
      s.arch = "qwen2_moe";
    } else {
      fail(path, "unsupported architecture " + quote(arch.empty() ? mt : arch) +
                     " (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                     "GemmaForCausalLM, Gemma2ForCausalLM, Phi3ForCausalLM, MixtralForCausalLM, Qwen2MoeForCausalLM)");
    }
    if (s.arch == "gemma" || s.arch == "gemma2") {
      // transformers' Gemma uses hidden_activation and, when it is unset, the tanh GELU
      // whatever hidden_act says (early Gemma configs say "gelu").
      std::string act = get_or<std::string>(j, "hidden_activation", "gelu_pytorch_tanh", path);
      if (act != "gelu_pytorch_tanh")
        fail(path, "unsupported hidden_activation " + quote(act) + " for Gemma (only gelu_pytorch_tanh)");
    } else {
      std::string act = get_or<std::string>(j, "hidden_act", "silu", path);
      if (act != "silu") fail(path, "unsupported hidden_act " + quote(act) + " (only silu/SwiGLU)");
    }
    s.hidden = get_or<int>(j, "hidden_size", 0, path);
    s.n_layers = get_or<int>(j, "num_hidden_layers", 0, path);
    s.n_heads = get_or<int>(j, "num_attention_heads", 0, path);
    s.n_kv_heads = get_or<int>(j, "num_key_value_heads", s.n_heads, path);
    s.head_dim = get_or<int>(j, "head_dim", s.n_heads > 0 ? s.hidden / s.n_heads : 0, path);
    s.ffn = get_or<int>(j, "intermediate_size", 0, path);
    s.vocab = get_or<int>(j, "vocab_size", 0, path);
    s.max_pos = get_or<int>(j, "max_position_embeddings", 2048, path);
    s.rms_eps = get_or<double>(j, "rms_norm_eps", 1e-6, path);
    // GemmaConfig ties by default; the others do not
    s.tie_embeddings = get_or<bool>(j, "tie_word_embeddings", s.arch == "gemma" || s.arch == "gemma2", path);
    read_experts(j, s, path);
    if (s.arch == "qwen2" || s.arch == "qwen2_moe") {
      s.attn_qkv_bias = true;  // Qwen2 always has q/k/v bias, no o_proj bias
    } else if (s.arch == "phi3") {
      // transformers' Phi-3 builds qkv_proj, o_proj, gate_up_proj and down_proj without a bias
      // whatever attention_bias says; mlp_bias is not a Phi-3 field.
    } else {
      s.attn_qkv_bias = s.attn_o_bias = get_or<bool>(j, "attention_bias", false, path);
    }
    if (s.arch != "phi3") s.mlp_bias = get_or<bool>(j, "mlp_bias", false, path);
    if (get_or<bool>(j, "rope_interleaved", false, path))
      fail(path, "rope_interleaved=true is not supported for HF checkpoints");
    read_rope(j, s, path);
    read_sliding(j, s, path);
    if (s.arch == "gemma2") read_gemma2(j, s, path);
    set_family_math(s);
    if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
      s.bos_id = json_number<int>(j["bos_token_id"], path, "bos_token_id");
    if (j.contains("eos_token_id")) {
      const json& e = j["eos_token_id"];
      s.eos_ids.clear();
      if (e.is_number_integer()) s.eos_ids.push_back(json_number<int>(e, path, "eos_token_id"));
      if (e.is_array())
        for (auto& v : e) s.eos_ids.push_back(json_number<int>(v, path, "eos_token_id"));
    }
  } catch (const json::exception& e) {
    fail(path, std::string("bad field type: ") + e.what());
  }
  s.validate(path);
  return s;
}

std::string spec_to_hf_config(const ModelSpec& s) {
  if (s.rope_style != RopeStyle::RotateHalf) fail("cannot write an HF config for interleaved RoPE (convert first)");
  static const std::map<std::string, std::string> archs = {
      {"llama", "LlamaForCausalLM"},
      {"mistral", "MistralForCausalLM"},
      {"qwen2", "Qwen2ForCausalLM"},
      {"qwen3", "Qwen3ForCausalLM"},
      {"gemma", "GemmaForCausalLM"},
      {"gemma2", "Gemma2ForCausalLM"},
      {"phi3", "Phi3ForCausalLM"},
      {"mixtral", "MixtralForCausalLM"},
      {"qwen2_moe", "Qwen2MoeForCausalLM"}};
  json j = {{"architectures", {archs.at(s.arch)}},
            {"model_type", s.arch},
            {"hidden_size", s.hidden},
            {"intermediate_size", s.ffn},
            {"num_hidden_layers", s.n_layers},
            {"num_attention_heads", s.n_heads},
            {"num_key_value_heads", s.n_kv_heads},
            {"head_dim", s.head_dim},
            {"vocab_size", s.vocab},
            {"max_position_embeddings", s.max_pos},
            {"rms_norm_eps", s.rms_eps},
            {"rope_theta", s.rope_theta},
            {"tie_word_embeddings", s.tie_embeddings},
            {"hidden_act", s.act == Act::SiLU ? "silu" : "gelu_pytorch_tanh"},
            {"mlp_bias", s.mlp_bias},
            {"bos_token_id", s.bos_id},
            {"eos_token_id", s.eos_ids.size() == 1 ? json(s.eos_ids[0]) : json(s.eos_ids)},
            {"torch_dtype", "float32"}};
  if (s.arch != "qwen2" && s.arch != "qwen2_moe") j["attention_bias"] = s.attn_qkv_bias;
  if (s.arch == "mixtral") j.update({{"num_local_experts", s.n_experts}, {"num_experts_per_tok", s.top_k}});
  if (s.arch == "qwen2_moe")
    j.update({{"num_experts", s.n_experts},
              {"num_experts_per_tok", s.top_k},
              {"moe_intermediate_size", s.moe_ffn},
              {"shared_expert_intermediate_size", s.shared_ffn},
              {"norm_topk_prob", s.norm_topk_prob},
              {"decoder_sparse_step", 1},
              {"mlp_only_layers", json::array()}});
  if (s.act == Act::GeluTanh) j["hidden_activation"] = "gelu_pytorch_tanh";
  if (s.arch == "gemma2") {  // null: no soft-cap (Gemma2Config's own form)
    j["query_pre_attn_scalar"] = s.query_pre_attn_scalar;
    j["attn_logit_softcapping"] = s.attn_softcap > 0 ? json(s.attn_softcap) : json(nullptr);
    j["final_logit_softcapping"] = s.final_softcap > 0 ? json(s.final_softcap) : json(nullptr);
    if (s.sliding_window == 0) j["sliding_window"] = nullptr;
  }
  if (s.sliding_window > 0) {
    j["sliding_window"] = s.sliding_window;
    if (s.arch == "qwen2" || s.arch == "qwen3" || s.arch == "qwen2_moe") j["use_sliding_window"] = true;
    if (!s.layer_slides.empty()) {
      json lt = json::array();
      for (uint8_t b : s.layer_slides) lt.push_back(b ? "sliding_attention" : "full_attention");
      j["layer_types"] = lt;
      // Qwen2 configs read by transformers 4 (no layer_types): the same layers when they are
      // a suffix, which is the only pattern Qwen2's max_window_layers can express.
      if (s.arch == "qwen2" || s.arch == "qwen3" || s.arch == "qwen2_moe") {
        int first = s.n_layers;
        while (first > 0 && s.layer_slides[first - 1]) first--;
        j["max_window_layers"] = first;
      }
    }
  }
  const RopeScaling& r = s.rope_scaling;
  if (!r.type.empty()) {
    json rj = {{"rope_type", r.type}, {"factor", r.factor}};
    if (r.type == "llama3")
      rj.update({{"low_freq_factor", r.low_freq_factor},
                 {"high_freq_factor", r.high_freq_factor},
                 {"original_max_position_embeddings", r.original_max_position}});
    if (r.type == "yarn")
      rj.update({{"original_max_position_embeddings", r.original_max_position},
                 {"beta_fast", r.beta_fast},
                 {"beta_slow", r.beta_slow},
                 {"truncate", r.truncate}});
    if (r.type == "longrope" && s.arch == "phi3") {
      // Phi3Config's form (transformers 4 checks it has exactly type, short_factor, long_factor):
      // original_max_position_embeddings at the top level, the factor implied by max_pos / it.
      rj = {{"type", "longrope"}, {"short_factor", r.short_factor}, {"long_factor", r.long_factor}};
      j["original_max_position_embeddings"] = r.original_max_position;
    } else if (r.type == "longrope") {
      rj.update({{"original_max_position_embeddings", r.original_max_position},
                 {"short_factor", r.short_factor},
                 {"long_factor", r.long_factor}});
    }
    if ((r.type == "yarn" || r.type == "longrope") && r.attention_factor > 0) rj["attention_factor"] = r.attention_factor;
    if (r.type == "yarn" && r.mscale > 0) rj["mscale"] = r.mscale;
    if (r.type == "yarn" && r.mscale_all_dim > 0) rj["mscale_all_dim"] = r.mscale_all_dim;
    j["rope_scaling"] = rj;
  }
  return j.dump(2);
}

}  // namespace kt
