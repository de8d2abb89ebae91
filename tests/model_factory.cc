#include "model_factory.h"

#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "io/safetensors.h"
#include "test_util.h"
#include "util/error.h"

namespace kt::test {

namespace {

// bf16 safetensors writer for tests (the library writes fp32 only).
void write_bf16(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& ts) {
  nlohmann::json h = nlohmann::json::object();
  size_t off = 0;
  for (auto& [n, t] : ts) {
    h[n] = {{"dtype", "BF16"}, {"shape", t->shape}, {"data_offsets", {off, off + t->data.size() * 2}}};
    off += t->data.size() * 2;
  }
  std::string hs = h.dump(), out;
  uint64_t hl = hs.size();
  out.append((const char*)&hl, 8);
  out += hs;
  for (auto& [n, t] : ts)
    for (float f : t->data) {
      uint16_t b = f32_to_bf16(f);
      out.append((const char*)&b, 2);
    }
  write_file_atomic(path, out);
}

}  // namespace

std::string make_random_model(const RandomModelOptions& o) {
  std::string dir = temp_dir("model");
  const int hd = o.hidden / o.heads;
  nlohmann::json cfg = {{"architectures", {o.qwen2_bias ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
                        {"model_type", o.qwen2_bias ? "qwen2" : "llama"},
                        {"hidden_size", o.hidden},
                        {"intermediate_size", o.ffn},
                        {"num_hidden_layers", o.layers},
                        {"num_attention_heads", o.heads},
                        {"num_key_value_heads", o.kv_heads},
                        {"head_dim", hd},
                        {"vocab_size", o.vocab},
                        {"max_position_embeddings", o.max_pos},
                        {"rms_norm_eps", 1e-5},
                        {"rope_theta", 10000.0},
                        {"tie_word_embeddings", false},
                        {"hidden_act", "silu"}};
  write_file_atomic(dir + "/config.json", cfg.dump(2));
  std::mt19937 rng(o.seed);
  std::normal_distribution<float> nd(0.0f, (float)o.weight_std);
  std::vector<std::pair<std::string, Tensor>> ts;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, bool norm = false) {
    Tensor t(shape);
    for (auto& x : t.data) x = norm ? 1.0f + nd(rng) : nd(rng);
    ts.emplace_back(n, std::move(t));
  };
  add("model.embed_tokens.weight", {o.vocab, o.hidden});
  for (int l = 0; l < o.layers; l++) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {o.hidden}, true);
    add(p + "self_attn.q_proj.weight", {o.heads * hd, o.hidden});
    add(p + "self_attn.k_proj.weight", {o.kv_heads * hd, o.hidden});
    add(p + "self_attn.v_proj.weight", {o.kv_heads * hd, o.hidden});
    if (o.qwen2_bias) {
      add(p + "self_attn.q_proj.bias", {o.heads * hd});
      add(p + "self_attn.k_proj.bias", {o.kv_heads * hd});
      add(p + "self_attn.v_proj.bias", {o.kv_heads * hd});
    }
    add(p + "self_attn.o_proj.weight", {o.hidden, o.heads * hd});
    add(p + "post_attention_layernorm.weight", {o.hidden}, true);
    add(p + "mlp.gate_proj.weight", {o.ffn, o.hidden});
    add(p + "mlp.up_proj.weight", {o.ffn, o.hidden});
    add(p + "mlp.down_proj.weight", {o.hidden, o.ffn});
  }
  add("model.norm.weight", {o.hidden}, true);
  add("lm_head.weight", {o.vocab, o.hidden});
  const int shards = std::max(1, o.shards);
  nlohmann::json wm = nlohmann::json::object();
  for (int s = 0; s < shards; s++) {
    std::vector<std::pair<std::string, const Tensor*>> part;
    for (size_t i = s; i < ts.size(); i += shards) part.emplace_back(ts[i].first, &ts[i].second);
    std::string fname = shards == 1 ? "model.safetensors"
                                    : "model-" + std::to_string(s + 1) + "-of-" + std::to_string(shards) + ".safetensors";
    if (o.bf16) write_bf16(dir + "/" + fname, part); else write_safetensors(dir + "/" + fname, part);
    for (auto& [n, _] : part) wm[n] = fname;
  }
  if (shards > 1) write_file_atomic(dir + "/model.safetensors.index.json", nlohmann::json{{"weight_map", wm}}.dump());
  if (symlink((tinyllama() + "/tokenizer.model").c_str(), (dir + "/tokenizer.model").c_str()) != 0)
    fail(dir, "cannot link tokenizer");
  return dir;
}

}  // namespace kt::test
