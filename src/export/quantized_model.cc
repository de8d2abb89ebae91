#include "export/quantized_model.h"

#include <cmath>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "export/gguf_writer.h"
#include "io/gguf_model.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/packed.h"
#include "model/fused.h"
#include "model/pack_linear.h"
#include "quant/pipeline.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/output.h"

namespace kt {

namespace {

// Every file a quantized-model directory can hold; --force replaces a directory only if it
// holds nothing else (and no subdirectory), so a user's own files are never deleted.
const char* const kModelDirFiles[] = {"model.safetensors",       "model.safetensors.index.json", "config.json", "recipe.json",
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
    known = known || is_quantized_shard_name(name);
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

// The tensors of one safetensors file of a quantized model, in the order they are added, with
// the stored forms (packed bytes, ".qbits" scalars, a family's norm offset) kept alive here.
class QuantizedTensorSet {
 public:
  QuantizedTensorSet(const Model& m, bool packed, bool scale_f16) : m_(m), packed_(packed), scale_f16_(scale_f16) {}

  // The embedding (first in model.safetensors, alone with the head in a streamed model's shard 1).
  // Deferred (Model::globals_deferred): read, transformed and written a block of rows at a time.
  void add_embed() {
    const std::string name = table().global(Global::Embed).hf;
    if (!m_.globals_deferred()) return add(name, m_.embed);
    const int64_t d = m_.spec.hidden;
    add_rows(name, [this, d](size_t first, size_t n, float* dst) { m_.embed_rows((int64_t)(first / d), (int64_t)(n / d), dst); });
  }

  // Layer l: norms first, then each linear with its bias and scales (the order of the data in
  // the file). Every linear with its table name (each expert's; the routing linears too, which
  // stay fp32). A fused tensor (ArchTable::fused) is written once, where its first part comes, as
  // the parts concatenated along out: the output keeps the family's on-disk names.
  void add_layer(int l, const LayerWeights& w) {
    w.for_each_tensor(m_.spec, [&](const TensorRow& row, int, TensorRole, const Tensor& t) {
      if (row.is_norm()) add(hf_name(row, l, "weight"), *stored_norm(t));
    });
    w.for_each_tensor(m_.spec, [&](const TensorRow& row, int expert, TensorRole role, const Tensor&) {
      if (row.is_norm() || role != TensorRole::Weight) return;
      const Field f = row.field;
      const Linear& li = w.linear(f, expert);
      const FusedRow* fr = fused_of(table(), f);
      const std::string where = "layer " + std::to_string(l) + " ";
      if (!fr) return add_linear(hf_name(row, l, nullptr, expert), li, true, where + hf_name(row, l, nullptr, expert));
      if (f != fr->parts[0]) return;
      std::vector<const Linear*> parts;
      for (Field p : fr->parts) parts.push_back(&w.linear(p));
      const std::string n = hf_name(*fr, l);
      fused_keep_.push_back(fuse_linears(parts, m_.path + ": layer " + std::to_string(l) + " " + n));
      add_linear(n, fused_keep_.back(), fused_packable(*fr, m_.spec), where + n);
    });
  }

  // The head, a linear named by its weight ("lm_head.weight" -> "lm_head"); nothing when tied.
  void add_head(const std::string& out, const Recipe& r) {
    if (m_.tied()) return;
    const std::string hf = table().global(Global::LmHead).hf;
    if (m_.globals_deferred()) return add_head_by_rows(hf, r);
    if (m_.lm_head.w.empty()) fail(out, "lm_head has no fp32 weights to write (a packed model? save the fake-quant one)");
    const std::string base = lm_head_base(m_.spec);
    if (m_.lm_head.qscale.empty() || base.empty())
      add(hf, m_.lm_head.w);
    else
      add_linear(base, m_.lm_head, true, "lm_head");
  }

  // Each ".qscale" so far gets its ".qbits", after everything added before.
  void pair_qbits() {
    size_t i = 0;
    std::vector<SafetensorsOut> extra;
    for (const SafetensorsOut& t : ts_)
      if (t.name.size() > 7 && t.name.compare(t.name.size() - 7, 7, ".qscale") == 0) {
        const Tensor& b = qbits_keep_[i++];
        extra.push_back({t.name.substr(0, t.name.size() - 7) + ".qbits", b.shape, DType::F32, b.data.data(), nullptr, {}, {}, 0});
      }
    ts_.insert(ts_.end(), extra.begin(), extra.end());
  }

  void add_final_norm() { add(table().global(Global::FinalNorm).hf, *stored_norm(m_.final_norm)); }
  void add_recipe_tensor(const std::string& name, const Tensor& t) { add("kurtail." + name, t); }

  // Writes the file; returns the names it holds with their stored bytes.
  std::vector<std::pair<std::string, uint64_t>> write(const std::string& path, const Recipe& r) const {
    write_safetensors(path, ts_, {{"format", "pt"}, {"kurtail_method", r.method},
                                  {"kurtail_format", packed_ ? "packed-1" : "fakequant-1"}});
    std::vector<std::pair<std::string, uint64_t>> names;
    for (const SafetensorsOut& t : ts_) names.emplace_back(t.name, dtype_nbytes(t.dtype, Tensor::numel_of(t.shape)));
    return names;
  }

 private:
  const ArchTable& table() const { return arch_table(m_.spec); }

  // Rows of the embedding or head written per piece: ~3 MiB of fp32 in whole blocks of the rows
  // the model transforms together (each read once) and so whole 16-row tiles of packed weights.
  int64_t piece_rows() const {
    static_assert(kGlobalRowBlock % kTileN == 0, "a piece of rows is whole packed tiles");
    return std::max<int64_t>(1, ((int64_t{3} << 20) / (4 * m_.spec.hidden)) / kGlobalRowBlock) * kGlobalRowBlock;
  }
  // A [vocab, hidden] fp32 tensor made by `rows` a piece at a time.
  void add_rows(const std::string& name, std::function<void(size_t, size_t, float*)> rows) {
    const int64_t d = m_.spec.hidden;
    SafetensorsOut t{name, {m_.spec.vocab, d}, DType::F32, nullptr, nullptr, {}, {}, 0};
    t.piece = (size_t)(piece_rows() * d);
    t.produce = std::move(rows);
    ts_.push_back(std::move(t));
  }

  // A deferred head (see add_embed): each piece of rows read, transformed and quantized by
  // head_block, then packed or written as fp32 on its grid, as add_linear writes a held head; its
  // scales (vocab x groups: small) are kept from each piece for the .qscale written after it.
  void add_head_by_rows(const std::string& hf, const Recipe& r) {
    const int64_t V = m_.spec.vocab, d = m_.spec.hidden, R = piece_rows();
    const Linear probe = head_block(m_, r, 0, std::min<int64_t>(V, kTileN));  // the scales' layout
    const std::string base = lm_head_base(m_.spec);
    if (probe.qscale.empty() || base.empty())  // unquantized, or on a grid without recorded scales
      return add_rows(hf, [this, &r, d](size_t first, size_t n, float* dst) {
        const Linear b = head_block(m_, r, (int64_t)(first / d), (int64_t)(n / d));
        std::copy(b.w.data.begin(), b.w.data.end(), dst);
      });
    const int64_t G = probe.qscale.dim(1);
    scales_keep_.push_back(Tensor({V, G}));
    Tensor* scales = &scales_keep_.back();
    auto keep_scales = [scales, G](const Linear& b, int64_t row0) {
      std::copy(b.qscale.data.begin(), b.qscale.data.end(), scales->data.begin() + row0 * G);
    };
    const std::optional<WType> wt = packed_ ? linear_wtype(probe) : std::nullopt;
    if (wt) {
      const size_t tile = wtype_traits(*wt).packed_bytes(kTileN, (int)d);  // bytes of 16 rows
      SafetensorsOut t{base + ".qweight", {(int64_t)(tile * ((V + kTileN - 1) / kTileN))}, DType::U8, nullptr, nullptr, {}, {}, 0};
      t.piece = tile * (size_t)(R / kTileN);
      t.produce_bytes = [this, &r, tile, V, keep_scales](size_t first, size_t n, uint8_t* dst) {
        const int64_t row0 = (int64_t)(first / tile) * kTileN, rows = std::min<int64_t>(V - row0, (int64_t)(n / tile) * kTileN);
        const Linear b = head_block(m_, r, row0, rows);
        keep_scales(b, row0);
        const std::shared_ptr<const PackedWeight> pw = pack_linear(b, m_.path, "lm_head");
        if (!pw || pw->data.size() != n) fail(m_.path, "internal: lm_head rows packed to an unexpected size");
        std::copy(pw->data.begin(), pw->data.end(), dst);
      };
      ts_.push_back(std::move(t));
    } else {
      add_rows(base + ".weight", [this, &r, d, keep_scales](size_t first, size_t n, float* dst) {
        const Linear b = head_block(m_, r, (int64_t)(first / d), (int64_t)(n / d));
        keep_scales(b, (int64_t)(first / d));
        std::copy(b.w.data.begin(), b.w.data.end(), dst);
      });
    }
    add(base + ".qscale", *scales, scale_f16_ ? DType::F16 : DType::F32);  // filled by the time it is written
    qbits_keep_.push_back(Tensor::from({(float)probe.qbits}));
  }
  void add(const std::string& name, const Tensor& t, DType d = DType::F32) {
    ts_.push_back({name, t.shape, d, t.data.data(), nullptr, {}, {}, 0});
  }
  // Norms are held as multipliers; a family whose checkpoints store multiplier - offset
  // (Gemma's 1 + w) gets its own form back.
  const Tensor* stored_norm(const Tensor& t) {
    if (m_.spec.norm_offset == 0.0f) return &t;
    norm_keep_.push_back(t);
    for (float& v : norm_keep_.back().data) v -= m_.spec.norm_offset;
    return &norm_keep_.back();
  }
  void add_linear(const std::string& n, const Linear& li, bool may_pack, const std::string& what) {
    // null: no packed form (no recorded grid, or a group size the packed layout cannot hold)
    std::shared_ptr<const PackedWeight> pw = packed_ && may_pack ? pack_linear(li, m_.path, what) : nullptr;
    if (pw) {  // written straight from the packed bytes (U8)
      ts_.push_back({n + ".qweight", {(int64_t)pw->data.size()}, DType::U8, nullptr, pw->data.data(), {}, {}, 0});
      packed_keep_.push_back(std::move(pw));
    } else {
      add(n + ".weight", li.w);
    }
    if (!li.b.empty()) add(n + ".bias", li.b);
    if (!li.qscale.empty()) {
      add(n + ".qscale", li.qscale, scale_f16_ ? DType::F16 : DType::F32);  // fp16-exact by construction
      qbits_keep_.push_back(Tensor::from({(float)li.qbits}));
    }
  }

  const Model& m_;
  const bool packed_, scale_f16_;
  std::vector<SafetensorsOut> ts_;
  std::deque<Tensor> qbits_keep_;  // stable addresses for the ".qbits" scalars
  std::vector<std::shared_ptr<const PackedWeight>> packed_keep_;  // the packed bytes written as U8
  std::deque<Linear> fused_keep_;  // the fused linears of a family that stores them so (Phi-3)
  std::deque<Tensor> norm_keep_;
  std::deque<Tensor> scales_keep_;  // a deferred head's scales, filled as its rows are written
};

namespace {

// config.json, recipe.json and the tokenizer files, beside the weights in the temp directory.
void write_model_dir_files(const Model& m, const Recipe& r, const std::string& tmp, bool tied) {
  ModelSpec s = m.spec;
  s.tie_embeddings = tied;
  write_file_atomic(tmp + "/config.json", spec_to_hf_config(s));
  write_file_atomic(tmp + "/recipe.json", r.to_json());
  // tokenizer files travel with the model
  if (m.tokenizer_path.empty()) return;
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

// the online R1 is rebuilt from the recipe at load: a model carrying one needs a recipe that says so
void check_online_r1(const LayerWeights& w0, const Model& m, const Recipe& r, const std::string& out) {
  if ((w0.post_norm_r1 != nullptr) != r1_runs_online(r, m.spec))
    fail(out, "the model's online R1 after its post-norms and the recipe's r1 disagree");
}

}  // namespace

void save_quantized(const Model& m, const Recipe& r, const std::string& out, bool force, bool packed,
                    const std::vector<std::string>& inputs) {
  const OutputPolicy policy = model_dir_policy(m, force, inputs);
  if (m.globals_deferred()) fail(out, "internal: a whole model written with its globals deferred");
  if (m.spec.n_layers > 0) check_online_r1(*m.layer(0), m, r, out);
  check_output(out, policy, /*is_dir=*/true);
  OutputDir dir(out, policy);
  const std::string& tmp = dir.path();
  {
    QuantizedTensorSet set(m, packed, r.w.scale_f16);
    std::vector<std::shared_ptr<const LayerWeights>> keep;
    set.add_embed();
    for (int l = 0; l < m.spec.n_layers; l++) {
      keep.push_back(m.layer(l));
      set.add_layer(l, *keep.back());
    }
    set.add_head(out, r);
    set.pair_qbits();
    set.add_final_norm();
    for (auto& [name, t] : r.tensors) set.add_recipe_tensor(name, t);
    set.write(tmp + "/model.safetensors", r);
  }
  write_model_dir_files(m, r, tmp, m.tied());
  check_interrupted();  // a signal during the writes: the temp directory goes, OUT stays as it was
  dir.commit();  // atomic: OUT appears whole, or an existing kurtail output is swapped out whole
}

std::string QuantizedModelWriter::shard_name(int i) const {
  char b[64];
  std::snprintf(b, sizeof b, "model-%05d-of-%05d.safetensors", i + 1, shards_);
  return b;
}

bool is_quantized_shard_name(const std::string& name) {
  int a = 0, b = 0;
  if (std::sscanf(name.c_str(), "model-%5d-of-%5d.safetensors", &a, &b) != 2 || a < 1 || a > b) return false;
  char c[64];
  std::snprintf(c, sizeof c, "model-%05d-of-%05d.safetensors", a, b);
  return name == c;
}

QuantizedModelWriter::QuantizedModelWriter(const Model& m, std::string out, bool force, bool packed,
                                           const std::vector<std::string>& inputs)
    : out_(std::move(out)), packed_(packed), shards_(m.spec.n_layers + 2) {
  const OutputPolicy policy = model_dir_policy(m, force, inputs);
  check_output(out_, policy, /*is_dir=*/true);
  dir_ = std::make_unique<OutputDir>(out_, policy);
}

QuantizedModelWriter::~QuantizedModelWriter() = default;

void QuantizedModelWriter::write_set(const Model& m, const Recipe& r, int shard, bool recipe_tail,
                                     const std::function<void(QuantizedTensorSet&)>& add) {
  QuantizedTensorSet set(m, packed_, r.w.scale_f16);
  add(set);
  set.pair_qbits();
  if (recipe_tail) set.add_final_norm();
  for (auto& [name, t] : r.tensors)  // the recipe's tensors as they appear (DuQuant: with their layer)
    if (written_recipe_.insert(name).second) set.add_recipe_tensor(name, t);
  const std::string file = shard_name(shard);
  for (const auto& [n, bytes] : set.write(dir_->path() + "/" + file, r)) {
    weight_map_[n] = file;
    total_bytes_ += bytes;
  }
  check_interrupted();
}

void QuantizedModelWriter::globals(const Model& m, const Recipe& r) {
  if (globals_done_) fail("internal: the globals of " + out_ + " written twice");
  tied_ = m.tied();
  write_set(m, r, 0, false, [&](QuantizedTensorSet& s) {
    s.add_embed();
    s.add_head(out_, r);
  });
  globals_done_ = true;
}

void QuantizedModelWriter::layer(int l, const LayerWeights& w, const Model& m, const Recipe& r) {
  if (!globals_done_ || l != next_layer_) fail("internal: layer " + std::to_string(l) + " of " + out_ + " out of order");
  if (l == 0) check_online_r1(w, m, r, out_);
  write_set(m, r, l + 1, false, [&](QuantizedTensorSet& s) { s.add_layer(l, w); });
  next_layer_++;
}

void QuantizedModelWriter::finish(const Model& m, const Recipe& r) {
  if (!globals_done_ || next_layer_ != m.spec.n_layers)
    fail("internal: " + out_ + " finished with " + std::to_string(next_layer_) + " of " + std::to_string(m.spec.n_layers) + " layers");
  write_set(m, r, shards_ - 1, true, [](QuantizedTensorSet&) {});
  // HF's index: total_size is the tensors' bytes; the shards' own __metadata__ say kurtail's format
  const nlohmann::json idx = {{"metadata", {{"total_size", total_bytes_}}}, {"weight_map", weight_map_}};
  write_file_atomic(dir_->path() + "/model.safetensors.index.json", idx.dump(2));
  write_model_dir_files(m, r, dir_->path(), tied_);
  check_interrupted();
  dir_->commit();
}

}  // namespace kt
