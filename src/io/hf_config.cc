// config.json -> ModelSpec. Kept in its own .cc so nlohmann/json stays out of headers.
#include <map>
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
    } else {
      fail(path, "unsupported architecture " + quote(arch.empty() ? mt : arch) +
                     " (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
    }
    std::string act = get_or<std::string>(j, "hidden_act", "silu", path);
    if (act != "silu") fail(path, "unsupported hidden_act " + quote(act) + " (only silu/SwiGLU)");
    s.hidden = get_or<int>(j, "hidden_size", 0, path);
    s.n_layers = get_or<int>(j, "num_hidden_layers", 0, path);
    s.n_heads = get_or<int>(j, "num_attention_heads", 0, path);
    s.n_kv_heads = get_or<int>(j, "num_key_value_heads", s.n_heads, path);
    s.head_dim = get_or<int>(j, "head_dim", s.n_heads > 0 ? s.hidden / s.n_heads : 0, path);
    s.ffn = get_or<int>(j, "intermediate_size", 0, path);
    s.vocab = get_or<int>(j, "vocab_size", 0, path);
    s.max_pos = get_or<int>(j, "max_position_embeddings", 2048, path);
    s.rms_eps = get_or<double>(j, "rms_norm_eps", 1e-6, path);
    s.rope_theta = get_or<double>(j, "rope_theta", 10000.0, path);
    s.tie_embeddings = get_or<bool>(j, "tie_word_embeddings", false, path);
    if (s.arch == "qwen2") {
      s.attn_qkv_bias = true;  // Qwen2 always has q/k/v bias, no o_proj bias
      if (get_or<bool>(j, "use_sliding_window", false, path)) s.sliding_window = get_or<int>(j, "sliding_window", 0, path);
    } else {
      s.attn_qkv_bias = s.attn_o_bias = get_or<bool>(j, "attention_bias", false, path);
      if (s.arch == "mistral") s.sliding_window = get_or<int>(j, "sliding_window", 0, path);
    }
    s.mlp_bias = get_or<bool>(j, "mlp_bias", false, path);
    if (get_or<bool>(j, "rope_interleaved", false, path))
      fail(path, "rope_interleaved=true is not supported for HF checkpoints");
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
      const json& r = j["rope_scaling"];
      std::string t = r.contains("rope_type") ? r["rope_type"].get<std::string>() : get_or<std::string>(r, "type", "", path);
      if (t == "llama3") {
        s.rope_scaling.type = "llama3";
        s.rope_scaling.factor = get_or<double>(r, "factor", 8.0, path);
        s.rope_scaling.low_freq_factor = get_or<double>(r, "low_freq_factor", 1.0, path);
        s.rope_scaling.high_freq_factor = get_or<double>(r, "high_freq_factor", 4.0, path);
        s.rope_scaling.original_max_position = get_or<int>(r, "original_max_position_embeddings", 8192, path);
      } else if (t == "default" || t.empty()) {
        // no scaling
      } else {
        fail(path, "unsupported rope_scaling type " + quote(t) + " (supported: none, llama3)");
      }
    }
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
      {"llama", "LlamaForCausalLM"}, {"mistral", "MistralForCausalLM"}, {"qwen2", "Qwen2ForCausalLM"}};
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
            {"hidden_act", "silu"},
            {"mlp_bias", s.mlp_bias},
            {"bos_token_id", s.bos_id},
            {"eos_token_id", s.eos_ids.size() == 1 ? json(s.eos_ids[0]) : json(s.eos_ids)},
            {"torch_dtype", "float32"}};
  if (s.arch != "qwen2") j["attention_bias"] = s.attn_qkv_bias;
  if (s.sliding_window > 0) {
    j["sliding_window"] = s.sliding_window;
    if (s.arch == "qwen2") j["use_sliding_window"] = true;
  }
  if (s.rope_scaling.type == "llama3")
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", s.rope_scaling.factor},
                         {"low_freq_factor", s.rope_scaling.low_freq_factor},
                         {"high_freq_factor", s.rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", s.rope_scaling.original_max_position}};
  return j.dump(2);
}

}  // namespace kt
