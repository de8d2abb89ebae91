// `kurtail export-gguf`: a model (FP, or transformed with only fusable rotations) as a llama.cpp
// GGUF, for llama-quantize and llama-cli. Online transforms cannot be expressed in GGUF: refuse.
#include <cstdio>
#include <cstring>
#include <regex>
#include <nlohmann/json.hpp>

#include "quant/validate_model.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "export/compressed_tensors.h"
#include "export/gguf_writer.h"
#include "io/gguf_model.h"
#include "io/json_checked.h"
#include "model/model.h"
#include "quant/pipeline.h"
#include "util/error.h"
#include "util/file.h"

namespace kt::cli {

namespace {

struct ExportArgs {
  std::string model, out, type = "f16", name;
  bool force = false, quiet = false;
  std::string format = "compressed-tensors", dtype = "float16";  // `kurtail export`
  bool drop_r3 = false;
} xa;

// general.name: the model's own name (config.json's _name_or_path), else the file or
// directory's base name; never the local path it was read from.
std::string model_name(const std::string& path) {
  std::string cfg = join_path(path, "config.json");
  if (is_directory(path) && file_exists(cfg)) {
    try {
      nlohmann::json j = parse_json(read_file(cfg), cfg);
      if (j.is_object() && j.contains("_name_or_path") && j["_name_or_path"].is_string()) {
        std::string n = j["_name_or_path"].get<std::string>();
        const size_t slash = n.find_last_of('/');
        // A hub id is "org/name" (word characters, '.', '-'); anything else is a local path,
        // of which only the base name is kept.
        static const std::regex hub_id(R"(^[\w.-]+/[\w.-]+$)");
        if (std::regex_match(n, hub_id) && n[0] != '.') return n;
        if (slash != std::string::npos) n = n.substr(slash + 1);
        if (!n.empty()) return n;
      }
    } catch (const Error&) {
    }
  }
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  const size_t slash = p.find_last_of('/');
  std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  for (const char* ext : {".gguf", ".bin"})
    if (base.size() > std::strlen(ext) && base.compare(base.size() - std::strlen(ext), std::string::npos, ext) == 0)
      base.resize(base.size() - std::strlen(ext));
  return base;
}

int run_export() {
  GGUFOutType t;
  if (xa.type == "f16") t = GGUFOutType::F16;
  else if (xa.type == "f32") t = GGUFOutType::F32;
  else if (xa.type == "bf16") t = GGUFOutType::BF16;
  else if (xa.type == "q8_0") t = GGUFOutType::Q8_0;
  else fail("--type must be f16, bf16, f32 or q8_0");
  std::optional<Recipe> rec;  // validated once, by open_model
  auto m = open_model(xa.model, -1, "", &rec);
  if (rec) {
    const Recipe& r = *rec;
    std::string online;
    if (r.r3) online += " R3 (online Q/K Hadamard)";
    if (r.r4) online += " R4 (online down_proj Hadamard)";
    if (r.online_had_inputs) online += " online Hadamard before every linear";
    if (r.crossquant) online += " CrossQuant column scales";
    if (r1_runs_online(r, m->spec)) online += " R1 (online after the post-norms)";
    if (r.tensors.size() > r.tensors.count(kOnlineR1Tensor)) online += " online site transforms";
    if (!online.empty())
      fail(xa.model, "recipe " + quote(r.method) + " needs online transforms GGUF cannot express:" + online +
                         " (quantize with --no-r3 --no-r4" + (r1_runs_online(r, m->spec) ? " --no-r1" : "") +
                         ", or a method without them)");
    if (!xa.quiet && (r.a.bits < 16 || r.k.bits < 16))
      std::fprintf(stderr, "kurtail: warning: activation/KV quantization in the recipe is not carried into GGUF; "
                           "llama.cpp chooses its own\n");
    if (!xa.quiet && r.w.bits < 16)
      std::fprintf(stderr, "kurtail: warning: weights are on a %d-bit grid, stored as %s; llama-quantize requantizes them\n",
                   r.w.bits, xa.type.c_str());
  }
  write_gguf(*m, xa.out, t, xa.name.empty() ? model_name(xa.model) : xa.name, xa.force);
  if (!xa.quiet) std::fprintf(stderr, "wrote %s\n", xa.out.c_str());
  return 0;
}

// `kurtail export --format compressed-tensors`: the quantized model as vLLM's checkpoint format.
int run_export_ct() {
  std::optional<Recipe> rec;  // validated once, by open_model
  auto m = open_model(xa.model, -1, "", &rec);
  if (!rec) fail(xa.model, "not a quantized model (no recipe.json): compressed-tensors export needs kurtail quantize's output");
  CtExportOptions o;
  o.dtype = xa.dtype;
  o.drop_r3 = xa.drop_r3;
  o.force = xa.force;
  const std::vector<std::string> notes = check_ct_export(*m, *rec, o, xa.model);
  if (!xa.quiet)
    for (const std::string& n : notes) std::fprintf(stderr, "kurtail: note: %s\n", n.c_str());
  write_compressed_tensors(*m, *rec, xa.out, o, notes);
  if (!xa.quiet) std::fprintf(stderr, "wrote %s\n", xa.out.c_str());
  return 0;
}

int run_export_any() { return xa.format == "gguf" ? run_export() : run_export_ct(); }

}  // namespace

void register_export(CLI::App& app) {
  {
    auto* c = app.add_subcommand("export", "Write a quantized model for a serving engine (vLLM: compressed-tensors) or llama.cpp (gguf)");
    path_option(c, "--model", xa.model, "kurtail quantize OUT (compressed-tensors); any model (gguf)")->required();
    path_option(c, "--out", xa.out, "output directory (compressed-tensors) or .gguf file")->required();
    choice_option(c, "--format", xa.format, "compressed-tensors (vLLM pack-quantized) or gguf (as export-gguf)",
                  {"compressed-tensors", "gguf"})
        ->capture_default_str();
    choice_option(c, "--dtype", xa.dtype, "compressed-tensors: dtype of scales, embeddings, norms and lm_head",
                  {"float16", "bfloat16", "float32"})
        ->capture_default_str();
    c->add_flag("--drop-r3", xa.drop_r3, "compressed-tensors: export a recipe with R3 without it (vLLM cannot run R3)");
    choice_option(c, "--type", xa.type, "gguf: type of the matrices", {"f16", "bf16", "f32", "q8_0"})->capture_default_str();
    path_option(c, "--name", xa.name, "gguf: general.name");
    c->add_flag("--force", xa.force, "replace OUT if kurtail wrote it (never the input)");
    c->add_flag("-q,--quiet", xa.quiet, "no messages");
    register_runner(c, run_export_any);
  }
  auto* c = app.add_subcommand("export-gguf", "Write a model (after fusable transforms) as a llama.cpp GGUF");
  xa.model = join_path(data_dir(), "models/tinyllama-8m");
  path_option(c, "--model", xa.model, "HF directory, quantize OUT (fusable rotations only), llama2.c .bin or .gguf")
      ->capture_default_str();
  path_option(c, "--out", xa.out, "output .gguf")->required();
  choice_option(c, "--type", xa.type, "type of the matrices (norms stay f32)", {"f16", "bf16", "f32", "q8_0"})
      ->capture_default_str();
  path_option(c, "--name", xa.name, "general.name");
  c->add_flag("--force", xa.force, "replace OUT if it is a GGUF kurtail wrote (never the input)");
  c->add_flag("-q,--quiet", xa.quiet, "no messages");
  register_runner(c, run_export);
}

}  // namespace kt::cli
