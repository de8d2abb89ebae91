// Random-weight checkpoints of real model shapes for benchmarks (speed and cost work that does
// not need real weights): an HF Llama directory (config.json, one safetensors shard per decoder
// layer plus one for the globals, the index, and tinyllama-8m's SentencePiece tokenizer, whose
// ids all fit any vocab it is given). Weights are seeded N(0, std); norms are 1.
//   kurtail_make_checkpoint --preset llama2-7b --layers 4 --dtype bf16 --out DIR
//   kurtail_make_checkpoint --hidden 512 --ffn 1408 --heads 8 --kv-heads 4 --layers 8 --out DIR
// Memory: one layer at a time (a shard is written before the next is drawn).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <random>
#include <set>
#include <string>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "util/error.h"
#include "util/file.h"
#include "util/output.h"

namespace {

struct Shape {
  int hidden = 256, ffn = 704, heads = 8, kv_heads = 4, head_dim = 0, layers = 8, vocab = 8192, max_pos = 4096;
  double rope_theta = 10000;
  bool tied = false;
};

// Layer shapes of the models the speed issue names (their config.json values).
bool preset(const std::string& name, Shape& s) {
  if (name == "llama2-7b") s = {4096, 11008, 32, 32, 128, 32, 32000, 4096, 10000, false};
  else if (name == "llama3-8b") s = {4096, 14336, 32, 8, 128, 32, 128256, 8192, 500000, false};
  else if (name == "llama3.2-1b") s = {2048, 8192, 32, 8, 64, 16, 128256, 8192, 500000, true};
  else if (name == "tinyllama-8m") s = {256, 704, 8, 4, 32, 8, 8192, 512, 10000, true};
  else return false;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Write a random-weight Llama checkpoint of a given shape (benchmarks only)");
  Shape s;
  std::string pre, out, dtype = "bf16", tokenizer;
  int layers = 0;
  unsigned seed = 0;
  double std_dev = 0.02;
  app.add_option("--preset", pre, "llama2-7b | llama3-8b | llama3.2-1b | tinyllama-8m (shapes; flags below override)");
  app.add_option("--out", out, "output directory (must not exist)")->required();
  app.add_option("--layers", layers, "decoder layers (default: the preset's)")->check(CLI::Range(1, 1024));
  app.add_option("--hidden", s.hidden)->check(CLI::Range(8, 65536));
  app.add_option("--ffn", s.ffn)->check(CLI::Range(8, 262144));
  app.add_option("--heads", s.heads)->check(CLI::Range(1, 1024));
  app.add_option("--kv-heads", s.kv_heads)->check(CLI::Range(1, 1024));
  app.add_option("--head-dim", s.head_dim, "0 = hidden / heads")->check(CLI::Range(0, 1024));
  app.add_option("--vocab", s.vocab, "at least the tokenizer's 8192 ids")->check(CLI::Range(8192, 1 << 20));
  app.add_option("--dtype", dtype, "bf16 | f32")->check(CLI::IsMember({"bf16", "f32"}));
  app.add_option("--seed", seed);
  app.add_option("--std", std_dev, "standard deviation of the weights")->check(CLI::Range(1e-6, 10.0));
  app.add_option("--tokenizer", tokenizer, "tokenizer.model to copy (default: $KURTAIL_DATA/models/tinyllama-8m's)");
  // the preset first, then the explicit flags over it
  app.parse_complete_callback([&] {
    if (pre.empty()) return;
    Shape p;
    if (!preset(pre, p)) throw CLI::ValidationError("--preset", "unknown preset " + pre);
    for (const char* f : {"--hidden", "--ffn", "--heads", "--kv-heads", "--head-dim", "--vocab"})
      if (app.count(f) == 0) {
        const std::string n = f;
        if (n == "--hidden") s.hidden = p.hidden;
        if (n == "--ffn") s.ffn = p.ffn;
        if (n == "--heads") s.heads = p.heads;
        if (n == "--kv-heads") s.kv_heads = p.kv_heads;
        if (n == "--head-dim") s.head_dim = p.head_dim;
        if (n == "--vocab") s.vocab = p.vocab;
      }
    s.layers = p.layers, s.max_pos = p.max_pos, s.rope_theta = p.rope_theta, s.tied = p.tied;
  });
  CLI11_PARSE(app, argc, argv);
  try {
    if (layers > 0) s.layers = layers;
    if (s.head_dim == 0) s.head_dim = s.hidden / s.heads;
    if (s.heads % s.kv_heads) kt::fail("--heads must be a multiple of --kv-heads");
    if (tokenizer.empty()) {
      const char* d = std::getenv("KURTAIL_DATA");
      tokenizer = std::string(d ? d : "../shared/data") + "/models/tinyllama-8m/tokenizer.model";
    }
    const std::string tok = kt::read_file(tokenizer, 64u << 20);
    const kt::OutputPolicy policy{false, "checkpoint directory", nullptr, {tokenizer}};
    kt::check_output(out, policy, /*is_dir=*/true);  // before minutes of drawing weights
    kt::OutputDir dir(out, policy);
    const std::string p = dir.path();
    nlohmann::json cfg = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"},
                          {"hidden_size", s.hidden}, {"intermediate_size", s.ffn},
                          {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
                          {"num_key_value_heads", s.kv_heads}, {"head_dim", s.head_dim},
                          {"vocab_size", s.vocab}, {"max_position_embeddings", s.max_pos},
                          {"rms_norm_eps", 1e-5}, {"rope_theta", s.rope_theta},
                          {"tie_word_embeddings", s.tied}, {"hidden_act", "silu"},
                          {"torch_dtype", dtype == "bf16" ? "bfloat16" : "float32"},
                          {"kurtail_random_weights", "made by kurtail_make_checkpoint: benchmarks only"}};
    kt::write_file_atomic(p + "/config.json", cfg.dump(2));
    kt::write_file_atomic(p + "/tokenizer.model", tok);
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, (float)std_dev);
    nlohmann::json wm = nlohmann::json::object();
    const int shards = s.layers + 1;
    auto shard = [&](int i, const std::vector<std::pair<std::string, std::vector<int64_t>>>& names) {
      std::vector<kt::Tensor> ts;
      std::vector<std::pair<std::string, const kt::Tensor*>> refs;
      std::set<std::string> bf16;
      ts.reserve(names.size());
      for (auto& [n, shape] : names) {
        ts.emplace_back(shape);
        const bool norm = shape.size() == 1;
        for (float& x : ts.back().data) x = norm ? 1.0f : nd(rng);
      }
      for (size_t k = 0; k < names.size(); k++) {
        refs.emplace_back(names[k].first, &ts[k]);
        if (dtype == "bf16") bf16.insert(names[k].first);
      }
      char fname[64];
      std::snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", i + 1, shards);
      kt::write_safetensors(p + "/" + fname, refs, {{"format", "pt"}}, {}, {}, bf16);
      for (auto& [n, _] : names) wm[n] = fname;
    };
    const int64_t d = s.hidden, qd = (int64_t)s.heads * s.head_dim, kvd = (int64_t)s.kv_heads * s.head_dim, f = s.ffn;
    for (int l = 0; l < s.layers; l++) {
      const std::string L = "model.layers." + std::to_string(l) + ".";
      shard(l, {{L + "input_layernorm.weight", {d}},
                {L + "self_attn.q_proj.weight", {qd, d}},
                {L + "self_attn.k_proj.weight", {kvd, d}},
                {L + "self_attn.v_proj.weight", {kvd, d}},
                {L + "self_attn.o_proj.weight", {d, qd}},
                {L + "post_attention_layernorm.weight", {d}},
                {L + "mlp.gate_proj.weight", {f, d}},
                {L + "mlp.up_proj.weight", {f, d}},
                {L + "mlp.down_proj.weight", {d, f}}});
      std::fprintf(stderr, "\rlayer %d/%d", l + 1, s.layers);
    }
    std::vector<std::pair<std::string, std::vector<int64_t>>> globals = {{"model.embed_tokens.weight", {s.vocab, d}},
                                                                         {"model.norm.weight", {d}}};
    if (!s.tied) globals.push_back({"lm_head.weight", {s.vocab, d}});
    shard(s.layers, globals);
    kt::write_file_atomic(p + "/model.safetensors.index.json", nlohmann::json{{"weight_map", wm}}.dump(1));
    dir.commit();
    std::fprintf(stderr, "\nwrote %s\n", out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kurtail_make_checkpoint: %s\n", e.what());
    return 1;
  }
  return 0;
}
