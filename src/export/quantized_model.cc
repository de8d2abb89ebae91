#include "export/quantized_model.h"

#include <cmath>
#include <deque>
#include <filesystem>
#include <set>

#include "export/gguf_writer.h"
#include "io/gguf_model.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/packed.h"
#include "model/fused.h"
#include "model/pack_linear.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/output.h"

namespace kt {

namespace {

// Every file a quantized-model directory can hold; --force replaces a directory only if it
// holds nothing else (and no subdirectory), so a user's own files are never deleted.
const char* const kModelDirFiles[] = {"model.safetensors",       "config.json",           "recipe.json",
                                      "tokenizer.model",         "tokenizer.json",        "tokenizer_config.json",
                                      "special_tokens_map.json", "generation_config.json", "tokenizer.gguf",
                                      "tokenizer.bin"};

OutputPolicy model_dir_policy(const Model& m, bool force, const std::vector<std::string>& inputs) {
  OutputPolicy p;
  p.force = force;
  p.kind = "model directory";
  p.is_own_output = is_kurtail_model_dir;
  p.inputs = inputs;
  if (!m.path.empty()) p.inputs.push_back(m.path);
  if (!m.tokenizer_path.empty()) p.inputs.push_back(m.tokenizer_path);
  return p;
}

}  // namespace

bool is_kurtail_model_dir(const std::string& dir) {
  std::error_code ec;
  bool has_recipe = false;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec) || e.is_symlink(ec)) return false;
    const std::string name = e.path().filename().string();
    bool known = false;
    for (const char* f : kModelDirFiles) known = known || name == f;
    if (!known) return false;
    has_recipe = has_recipe || name == "recipe.json";
  }
  if (ec || !has_recipe) return false;
  try {
    return read_file(join_path(dir, "recipe.json")).find("\"kurtail-recipe\"") != std::string::npos;
  } catch (const Error&) {
    return false;
  }
}

void check_output_dir(const Model& m, const std::string& out, bool force, const std::vector<std::string>& inputs) {
  check_output(out, model_dir_policy(m, force, inputs), /*is_dir=*/true);
}

void save_quantized(const Model& m, const Recipe& r, const std::string& out, bool force, bool packed,
                    const std::vector<std::string>& inputs) {
  const OutputPolicy policy = model_dir_policy(m, force, inputs);
  // the online R1 is rebuilt from the recipe at load: a model carrying one needs a recipe that says so
  if (m.spec.n_layers > 0 && (m.layer(0)->post_norm_r1 != nullptr) != r1_runs_online(r, m.spec))
    fail(out, "the model's online R1 after its post-norms and the recipe's r1 disagree");
  check_output(out, policy, /*is_dir=*/true);
  OutputDir dir(out, policy);
  const std::string& tmp = dir.path();
  {
    std::vector<std::pair<std::string, const Tensor*>> ts;
    std::vector<std::shared_ptr<const LayerWeights>> keep;
    std::deque<Tensor> qbits_keep;  // stable addresses for the ".qbits" scalars
    std::deque<Tensor> packed_keep;  // packed bytes (as floats here, written as U8)
    std::deque<Linear> fused_keep;   // the fused linears of a family that stores them so (Phi-3)
    std::vector<std::string> packed_names, f16_names;
    const ArchTable& table = arch_table(m.spec);
    // Norms are held as multipliers; a family whose checkpoints store multiplier - offset
    // (Gemma's 1 + w) gets its own form back.
    std::deque<Tensor> norm_keep;
    auto stored_norm = [&](const Tensor& t) -> const Tensor* {
      if (m.spec.norm_offset == 0.0f) return &t;
      norm_keep.push_back(t);
      for (float& v : norm_keep.back().data) v -= m.spec.norm_offset;
      return &norm_keep.back();
    };
    auto lin = [&](const std::string& n, const Linear& li, bool may_pack, const std::string& what) {
      // null: no packed form (no recorded grid, or a group size the packed layout cannot hold)
      const std::shared_ptr<const PackedWeight> pw = packed && may_pack ? pack_linear(li, m.path, what) : nullptr;
      if (pw) {
        Tensor bytes({(int64_t)pw->data.size()});
        for (size_t i = 0; i < pw->data.size(); i++) bytes.data[i] = pw->data[i];
        packed_keep.push_back(std::move(bytes));
        packed_names.push_back(n + ".qweight");
        ts.emplace_back(n + ".qweight", &packed_keep.back());
      } else {
        ts.emplace_back(n + ".weight", &li.w);
      }
      if (!li.b.empty()) ts.emplace_back(n + ".bias", &li.b);
      if (!li.qscale.empty()) {
        ts.emplace_back(n + ".qscale", &li.qscale);
        if (r.w.scale_f16) f16_names.push_back(n + ".qscale");  // fp16-exact by construction
        qbits_keep.push_back(Tensor::from({(float)li.qbits}));
      }
    };
    ts.emplace_back(table.global(Global::Embed).hf, &m.embed);
    for (int l = 0; l < m.spec.n_layers; l++) {
      keep.push_back(m.layer(l));
      const LayerWeights& w = *keep.back();
      // norms first, then each linear with its bias and scales (the order of the data in the file)
      w.for_each_tensor(m.spec, [&](const TensorRow& row, int, TensorRole, const Tensor& t) {
        if (row.is_norm()) ts.emplace_back(hf_name(row, l, "weight"), stored_norm(t));
      });
      // Every linear with its table name (each expert's; the routing linears too, which stay
      // fp32). A fused tensor (ArchTable::fused) is written once, where its first part comes, as
      // the parts concatenated along out: the output keeps the family's on-disk names.
      w.for_each_tensor(m.spec, [&](const TensorRow& row, int expert, TensorRole role, const Tensor&) {
        if (row.is_norm() || role != TensorRole::Weight) return;
        const Field f = row.field;
        const Linear& li = w.linear(f, expert);
        const FusedRow* fr = fused_of(table, f);
        const std::string where = "layer " + std::to_string(l) + " ";
        if (!fr) return lin(hf_name(row, l, nullptr, expert), li, true, where + hf_name(row, l, nullptr, expert));
        if (f != fr->parts[0]) return;
        std::vector<const Linear*> parts;
        for (Field p : fr->parts) parts.push_back(&w.linear(p));
        const std::string n = hf_name(*fr, l);
        fused_keep.push_back(fuse_linears(parts, m.path + ": layer " + std::to_string(l) + " " + n));
        lin(n, fused_keep.back(), fused_packable(*fr, m.spec), where + n);
      });
    }
    if (!m.tied()) {  // the head, a linear named by its weight ("lm_head.weight" -> "lm_head")
      const std::string hf = table.global(Global::LmHead).hf;
      if (m.lm_head.w.empty()) fail(out, "lm_head has no fp32 weights to write (a packed model? save the fake-quant one)");
      if (m.lm_head.qscale.empty() || hf.size() < 7 || hf.compare(hf.size() - 7, 7, ".weight") != 0)
        ts.emplace_back(hf, &m.lm_head.w);
      else
        lin(hf.substr(0, hf.size() - 7), m.lm_head, true, "lm_head");
    }
    {  // pair each ".qscale" with its ".qbits"
      size_t i = 0;
      std::vector<std::pair<std::string, const Tensor*>> extra;
      for (auto& [n, t] : ts)
        if (n.size() > 7 && n.compare(n.size() - 7, 7, ".qscale") == 0)
          extra.emplace_back(n.substr(0, n.size() - 7) + ".qbits", &qbits_keep[i++]);
      ts.insert(ts.end(), extra.begin(), extra.end());
    }
    ts.emplace_back(table.global(Global::FinalNorm).hf, stored_norm(m.final_norm));
    for (auto& [name, t] : r.tensors) ts.emplace_back("kurtail." + name, &t);
    write_safetensors(tmp + "/model.safetensors", ts, {{"format", "pt"}, {"kurtail_method", r.method},
                                                        {"kurtail_format", packed ? "packed-1" : "fakequant-1"}},
                      std::set<std::string>(packed_names.begin(), packed_names.end()),
                      std::set<std::string>(f16_names.begin(), f16_names.end()));
    ModelSpec s = m.spec;
    s.tie_embeddings = m.tied();
    write_file_atomic(tmp + "/config.json", spec_to_hf_config(s));
    write_file_atomic(tmp + "/recipe.json", r.to_json());
    // tokenizer files travel with the model
    if (!m.tokenizer_path.empty()) {
      if (is_directory(m.tokenizer_path)) {
        for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                              "generation_config.json"}) {
          std::string src = join_path(m.tokenizer_path, f);
          if (file_exists(src)) write_file_atomic(join_path(tmp, f), read_file(src, kMaxTokenizerBytes));
        }
      } else if (is_gguf_file(m.tokenizer_path) && m.tokenizer) {
        write_gguf_vocab(*m.tokenizer, join_path(tmp, "tokenizer.gguf"));  // not the whole GGUF model
      } else {
        write_file_atomic(join_path(tmp, "tokenizer.bin"), read_file(m.tokenizer_path, kMaxTokenizerBytes));
      }
    }
    check_interrupted();  // a signal during the writes: the temp directory goes, OUT stays as it was
    dir.commit();  // atomic: OUT appears whole, or an existing kurtail output is swapped out whole
  }
}

}  // namespace kt
