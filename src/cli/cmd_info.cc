// `kurtail info`: what a model is and what kurtail can do with it.
#include <cstdio>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "quant/validate_model.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/safetensors.h"
#include "quant/pipeline.h"
#include "kernels/packed.h"
#include "runtime/real_model.h"
#include "transform/rotation.h"
#include "util/error.h"
#include "util/file.h"

namespace kt::cli {

namespace {

struct InfoArgs {
  std::string model;
  bool json = false;
} ia;

std::string had(int n) {
  int p2, m;
  hadamard_factor(n, &p2, &m);
  return m ? "Hadamard " + std::to_string(p2) + " x " + std::to_string(m) : "no Hadamard construction (random orthogonal)";
}

// A GGUF kurtail cannot load (K-quant tensors, another architecture): what its metadata says.
bool gguf_metadata_only(nlohmann::json& j, const std::string& why) {
  GGUFFile f(ia.model);
  j["format"] = "gguf v" + std::to_string(f.version());
  j["architecture"] = f.get_string("general.architecture", "?");
  j["tensors"] = f.tensors().size();
  std::map<std::string, int> dt;
  for (auto& t : f.tensors()) dt[ggml_type_name(t.type)]++;
  j["dtypes"] = dt;
  j["tokenizer"] = f.get_string("tokenizer.ggml.model", "none");
  j["can"] = "show metadata only: " + why;
  return true;
}

int run_info() {
  nlohmann::json j;
  j["path"] = ia.model;
  std::unique_ptr<Model> mp;
  std::optional<Recipe> rec;  // validated once, by open_model
  try {
    mp = open_model(ia.model, -1, "", &rec);
  } catch (const Error& e) {
    if (!is_gguf_file(ia.model)) throw;
    gguf_metadata_only(j, e.what());
  }
  if (mp) {
    auto& m = mp;
    const ModelSpec& s = m->spec;
    const bool gguf = is_gguf_file(ia.model);
    j["format"] = is_directory(ia.model) ? "hf" : gguf ? "gguf v" + std::to_string(GGUFFile(ia.model).version()) : "llama2.c";
    j["architecture"] = s.arch;
    j["hidden"] = s.hidden;
    j["layers"] = s.n_layers;
    j["heads"] = s.n_heads;
    j["kv_heads"] = s.n_kv_heads;
    j["head_dim"] = s.head_dim;
    j["ffn"] = s.ffn;
    j["vocab"] = s.vocab;
    j["max_positions"] = s.max_pos;
    j["rope"] = s.rope_style == RopeStyle::RotateHalf ? "rotate_half" : "interleaved (llama2.c)";
    if (!s.rope_scaling.type.empty()) j["rope_scaling"] = s.rope_scaling.type;
    j["tied_embeddings"] = s.tie_embeddings;
    j["qkv_bias"] = s.attn_qkv_bias;
    if (s.sliding_window > 0) {  // per layer: the window, or "full"
      std::string w;
      for (int l = 0; l < s.n_layers; l++)
        w += (l ? ", " : "") + (s.window(l) ? std::to_string(s.window(l)) : std::string("full"));
      j["attn_windows"] = w;
    }
    const bool post_norms = arch_table(s).has(Field::PostAttnNorm);
    if (post_norms) j["post_norms"] = "post_attention, post_feedforward (before the residual adds)";
    if (s.query_pre_attn_scalar > 0) j["attn_scale"] = "query_pre_attn_scalar^-0.5 = " + fmt_num(s.query_pre_attn_scalar) + "^-0.5";
    if (s.attn_softcap > 0 || s.final_softcap > 0)
      j["softcaps"] = {{"attention", s.attn_softcap > 0 ? nlohmann::json(s.attn_softcap) : nlohmann::json("none")},
                       {"final", s.final_softcap > 0 ? nlohmann::json(s.final_softcap) : nlohmann::json("none")}};
    int64_t params = m->embed.numel() + (m->lm_head.empty() ? 0 : m->lm_head.numel()) + m->final_norm.numel();
    for (int l = 0; l < s.n_layers; l++)
      params += (int64_t)s.hidden * (2 * s.q_dim() + 2 * s.kv_dim()) + 3LL * s.hidden * s.ffn + (post_norms ? 4 : 2) * s.hidden;
    j["parameters"] = params;
    j["resident"] = m->resident();
    if (is_directory(ia.model)) {
      SafetensorsDir st(ia.model);
      std::map<std::string, int> dt;
      for (auto& n : st.names()) dt[dtype_name(st.info(n).dtype)]++;
      j["dtypes"] = dt;
    } else if (gguf) {
      GGUFFile f(ia.model);
      std::map<std::string, int> dt;
      for (auto& t : f.tensors()) dt[ggml_type_name(t.type)]++;
      j["dtypes"] = dt;
    } else {
      j["dtypes"] = {{"F32", "all"}};
    }
    j["tokenizer"] = m->tokenizer ? m->tokenizer->kind() + " (" + std::to_string(m->tokenizer->vocab_size()) + " tokens)" : "none";
    j["rotations"] = {{"R1 residual", had(s.hidden)}, {"R2/R3 head", had(s.head_dim)}, {"R4 down_proj", had(s.ffn)}};
    if (rec) {
      const Recipe& r = *rec;
      j["recipe"] = {{"method", r.method}, {"weights", r.w.describe()}, {"activations", r.a.describe()},
                     {"k", r.k.describe()}, {"v", r.v.describe()}};
      if (r1_runs_online(r, s))
        j["recipe"]["r1"] = r.tensors.count(kOnlineR1Tensor) ? "online after the post-norms (learned, dense)"
                                                              : "online after the post-norms (Hadamard from the seed)";
      std::string why;
      j["int_kernels"] = recipe_runs_on_kernels(r, &why) ? std::string("yes (") + kernel_name(active_kernel()) + ")" : "no: " + why;
      j["can"] = "eval (perplexity, KL, PIQA), run, analyze";
    } else {
      j["can"] = std::string("eval, generate, analyze, export-gguf, quantize (") + Recipe::method_list() + ")";
    }
  }
  if (ia.json) {
    std::cout << j.dump(2) << std::endl;
  } else {
    for (auto& [k, v] : j.items()) std::printf("%-16s %s\n", k.c_str(), v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
  }
  return 0;
}

}  // namespace

void register_info(CLI::App& app) {
  auto* c = app.add_subcommand("info", "What a model is (architecture, sizes, dtypes, tokenizer) and what kurtail can do with it");
  ia.model = join_path(data_dir(), "models/tinyllama-8m");
  path_option(c, "--model", ia.model, "HF directory, llama2.c .bin, quantized OUT or .gguf")->capture_default_str();
  c->add_flag("--json", ia.json, "JSON output");
  register_runner(c, run_info);
}

}  // namespace kt::cli
