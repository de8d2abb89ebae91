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
#include "quant/methods.h"
#include "model/rope.h"
#include "quant/pipeline.h"
#include "kernels/packed.h"
#include "runtime/real_model.h"
#include "transform/rotation.h"
#include "util/error.h"
#include "util/file.h"

namespace kt::cli {

namespace {

// "longrope (short/long factors switch past 32 positions, attention factor 1.41421)"
std::string describe_rope_scaling(const ModelSpec& s) {
  const RopeScaling& r = s.rope_scaling;
  if (r.type != "longrope") return r.type;
  const RopeFreqs f = rope_freqs(s, r.original_max_position + 1);
  char buf[160];
  std::snprintf(buf, sizeof buf, "longrope (short factors up to %d positions, long beyond; attention factor %.6g)",
                r.original_max_position, f.attention_factor);
  return buf;
}

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
    if (!s.rope_scaling.type.empty()) j["rope_scaling"] = describe_rope_scaling(s);
    if (s.sliding_window > 0) j["sliding_window"] = s.sliding_window;
    // Tensors the checkpoint stores fused (Phi-3): split at load, fused again at save
    const ArchTable& table = arch_table(s);
    if (!table.fused.empty()) {
      std::string fused;
      for (const FusedRow& r : table.fused) {
        std::string parts;
        for (Field f : r.parts) parts += (parts.empty() ? "" : " + ") + std::string(table.row(f).hf);
        fused += (fused.empty() ? "" : ", ") + std::string(r.hf) + " = " + parts;
      }
      j["fused_tensors"] = fused;
    }
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
    int64_t params = m->embed.numel() + (m->tied() ? 0 : Tensor::numel_of(m->lm_head.w.shape)) + m->final_norm.numel();
    int64_t per_layer = 0;  // every tensor the table gives a layer (each expert's too)
    for (const TensorRow& r : arch_table(s).layer) {
      const std::vector<int64_t> shape = row_shape(r, s);
      const int64_t n = shape[0] * (shape.size() > 1 ? shape[1] : 1) + (row_has_bias(r, s) ? shape[0] : 0);
      per_layer += n * (r.per_expert() ? s.n_experts : 1);
    }
    params += per_layer * s.n_layers;
    if (s.moe())
      j["experts"] = std::to_string(s.n_experts) + " of width " + std::to_string(s.moe_ffn) + ", top " +
                     std::to_string(s.top_k) + (s.norm_topk_prob ? " renormalised" : " not renormalised") +
                     (s.shared_ffn > 0 ? ", shared expert of width " + std::to_string(s.shared_ffn) + " (sigmoid gate)" : "") +
                     "; router in full precision";
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
    std::string r4;
    for (int n : s.down_widths()) r4 += (r4.empty() ? "" : ", ") + had(n);
    j["rotations"] = {{"R1 residual", had(s.hidden)}, {"R2/R3 head", had(s.head_dim)}, {"R4 down_proj", r4}};
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
      std::string runs;
      for (const MethodInfo& mi : methods())
        if (method_runs_on(mi, s)) runs += (runs.empty() ? "" : ", ") + std::string(mi.name);
      j["can"] = std::string("eval, generate, analyze, ") + (*arch_table(s).gguf_arch ? "export-gguf, " : "") +
                 "quantize (" + runs + ")";
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
