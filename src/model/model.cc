#include "io/hf_config.h"
#include "model/model.h"

#include <algorithm>
#include <cmath>

#include "io/gguf_model.h"
#include "io/llama2c.h"
#include "io/tokenizer.h"
#include "io/safetensors.h"
#include "model/fused.h"
#include "model/linear_quant.h"
#include "kernels/packed.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

namespace {

Tensor load_checked(const TensorSource& src, const std::string& name, std::vector<int64_t> shape) {
  const TensorInfo& ti = src.info(name);
  if (ti.shape != shape)
    fail(ti.file, "tensor " + quote(name) + " has shape " + shape_str(ti.shape) + " but config.json implies " +
                      shape_str(shape));
  Tensor t = to_f32(ti);
  release_mapped_pages(ti);  // the fp32 copy is what runs: a streamed model's RSS stays one layer
  check_finite(t, ti.file, name);
  return t;
}

size_t source_fp32_bytes(const TensorSource& src) {
  size_t bytes = 0;
  for (auto& n : src.names()) bytes += Tensor::numel_of(src.info(n).shape) * 4;
  return bytes;
}

// `resident` -1: keep every layer in memory if the model is at most 8 GiB in fp32, else stream.
bool keep_resident(const TensorSource& src, int resident) {
  if (resident >= 0) return resident == 1;
  return source_fp32_bytes(src) <= kResidentFp32Bytes;
}

std::string find_llama2c_tokenizer(const std::string& bin) {
  std::string dir = ".";
  auto slash = bin.rfind('/');
  if (slash != std::string::npos) dir = bin.substr(0, slash);
  for (const char* n : {"tokenizer.bin", "tok512.bin", "tok4096.bin", "tok32000.bin"}) {
    std::string p = join_path(dir, n);
    if (file_exists(p)) return p;
  }
  return "";
}

}  // namespace

std::unique_ptr<Model> Model::from_source(ModelSpec spec, std::shared_ptr<TensorSource> src, bool resident,
                                          bool defer_globals) {
  auto m = std::make_unique<Model>();
  m->spec = std::move(spec);
  m->src_ = unfused_source(std::move(src), m->spec);  // a fused checkpoint (Phi-3) read as its parts
  m->path = m->src_->describe();
  m->resident_ = resident;
  m->init_globals(defer_globals);
  return m;
}

std::unique_ptr<Model> Model::open(const std::string& path, int resident, const std::string& tokenizer_path,
                                   bool defer_globals) {
  std::unique_ptr<Model> m;
  if (is_directory(path)) {
    std::string cfg = join_path(path, "config.json");
    if (!file_exists(cfg)) fail(path, "not a model directory (no config.json)");
    ModelSpec spec = read_hf_config(cfg);
    // A quantized model (with recipe.json) is checked whole against its recipe by
    // quant/open_model.h before this runs; here each layer's grid tensors are checked as it loads.
    auto src = std::make_shared<SafetensorsDir>(path);
    m = from_source(spec, src, keep_resident(*src, resident), defer_globals);
    // HF tokenizer files win; a directory without them may carry a converted model's vocabulary
    const bool hf_tok = file_exists(join_path(path, "tokenizer.model")) || file_exists(join_path(path, "tokenizer.json"));
    if (!tokenizer_path.empty()) {
      m->tokenizer = load_sentencepiece(tokenizer_path);
      m->tokenizer_path = tokenizer_path;
    } else if (!hf_tok && file_exists(join_path(path, "tokenizer.gguf"))) {
      m->tokenizer_path = join_path(path, "tokenizer.gguf");  // made from a GGUF model
      m->tokenizer = load_gguf_tokenizer(GGUFFile(m->tokenizer_path));
    } else if (!hf_tok && file_exists(join_path(path, "tokenizer.bin"))) {
      m->tokenizer_path = join_path(path, "tokenizer.bin");  // a converted llama2.c model
      m->tokenizer = load_llama2c_tokenizer(m->tokenizer_path, spec.vocab);
    } else {
      m->tokenizer = load_hf_tokenizer(path);
      m->tokenizer_path = path;
    }
  } else if (is_gguf_file(path)) {
    auto f = std::make_shared<const GGUFFile>(path);
    ModelSpec spec = gguf_model_spec(*f);
    auto src = std::make_shared<GGUFSource>(f, spec);
    m = from_source(spec, src, keep_resident(*src, resident), defer_globals);
    m->tokenizer = tokenizer_path.empty() ? load_gguf_tokenizer(*f) : load_sentencepiece(tokenizer_path);
    m->tokenizer_path = tokenizer_path.empty() ? path : tokenizer_path;
  } else if (file_exists(path)) {
    auto ck = read_llama2c(path);
    m = from_source(ck.spec, std::shared_ptr<TensorSource>(std::move(ck.tensors)), true, defer_globals);
    std::string tp = tokenizer_path.empty() ? find_llama2c_tokenizer(path) : tokenizer_path;
    if (tp.empty()) fail(path, "missing tokenizer (no tokenizer.bin or tok*.bin beside the checkpoint; pass --tokenizer)");
    m->tokenizer = load_llama2c_tokenizer(tp, m->spec.vocab);
    m->tokenizer_path = tp;
  } else {
    fail(path, "no such file or directory");
  }
  m->path = path;
  if (m->tokenizer && m->tokenizer->vocab_size() > m->spec.vocab)
    fail(path, "tokenizer has " + std::to_string(m->tokenizer->vocab_size()) + " tokens but the model only " +
                   std::to_string(m->spec.vocab));
  return m;
}

namespace {
// Norms are held as the multiplier; a checkpoint that stores multiplier - 1 (Gemma) gets the
// offset back here, in fp32, as transformers computes 1 + w.
void add_norm_offset(Tensor& t, const ModelSpec& s, const TensorSource& src) {
  if (s.norm_offset != 0.0f && !src.norms_stored_as_multipliers())
    for (float& v : t.data) v += s.norm_offset;
}

// One linear `n` ("model.layers.3.mlp.up_proj", "lm_head") of shape [out, in]: fp32 weights, and
// kurtail's integer-grid scales when present (checked against the weights), or packed codes
// (kurtail quantize --packed), which stay packed in memory.
void load_linear(const TensorSource& src, const std::string& n, int64_t out, int64_t in, bool bias, Linear& l) {
  if (!src.has(n + ".weight") && src.has(n + ".qweight")) {
    l.w.shape = {out, in};
    (void)check_linear_quant(src, n, out, in);  // scales, bits and byte count (quant/validate_model.h)
    l.packed = load_packed_weight(src, n, (int)out, (int)in, &l.qscale, &l.qbits);
    if (bias) l.b = load_checked(src, n + ".bias", {out});
    return;
  }
  l.w = load_checked(src, n + ".weight", {out, in});
  if (bias) l.b = load_checked(src, n + ".bias", {out});
  // written by kurtail quantize: exact integer grid scales, checked with the weights they scale
  LinearQuant q = check_linear_quant(src, n, out, in);
  if (q.qbits) {
    check_on_grid(l.w, q, src.info(n + ".weight").file, n);
    l.qscale = std::move(q.qscale);
    l.qbits = q.qbits;
  }
}
}  // namespace

bool Model::can_defer_globals() const {
  for (const GlobalRow& g : arch_table(spec).globals) {
    if (g.id == Global::FinalNorm) continue;
    if (g.id == Global::LmHead) {
      const std::string base = lm_head_base(spec);
      if (!base.empty() && (src_->has(base + ".qweight") || src_->has(base + ".qscale"))) return false;
      if (!src_->has(g.hf)) continue;  // tied (or missing: the usual load says which)
    }
    if (!src_->has(g.hf)) return false;
    const TensorInfo& ti = src_->info(g.hf);
    // anything unusual loads as usual, which names what is wrong
    if (ti.shape != global_shape(g, spec) || !readable_by_rows(ti)) return false;
  }
  return true;
}

void Model::init_globals(bool defer) {
  const auto& s = spec;
  const ArchTable& t = arch_table(s);
  deferred_ = defer && can_defer_globals();
  for (const GlobalRow& g : t.globals) {
    if (deferred_ && g.id != Global::FinalNorm) {
      if (g.id == Global::Embed) embed_name_ = g.hf;
      if (g.id == Global::LmHead) {
        head_name_ = g.hf;
        head_stored_ = src_->has(g.hf);
        if (!head_stored_ && !s.tie_embeddings)
          fail(src_->describe(), "missing tensor " + quote(g.hf) + " (and tie_word_embeddings is false)");
      }
      continue;
    }
    if (g.id == Global::LmHead) {
      // a linear named by its weight: "lm_head.weight" -> "lm_head" (+ .qscale, .qbits, .qweight)
      const std::string hf = g.hf, named_base = lm_head_base(s);
      const bool named = !named_base.empty();
      const std::string base = named ? named_base : hf;
      if (!src_->has(hf) && !(named && src_->has(base + ".qweight"))) {  // tied to the embedding
        if (!s.tie_embeddings)
          fail(src_->describe(), "missing tensor " + quote(hf) + " (and tie_word_embeddings is false)");
        continue;
      }
      const std::vector<int64_t> shape = global_shape(g, s);
      if (named) load_linear(*src_, base, shape[0], shape[1], false, lm_head);
      else lm_head.w = load_checked(*src_, hf, shape);
      continue;
    }
    Tensor& dst = g.id == Global::Embed ? embed : final_norm;
    dst = load_checked(*src_, g.hf, global_shape(g, s));
    if (g.id == Global::FinalNorm) add_norm_offset(dst, s, *src_);
  }
  layers_.assign(s.n_layers, nullptr);
  pinned_.assign(s.n_layers, false);
  if (resident_)
    for (int i = 0; i < s.n_layers; i++) layers_[i] = std::make_shared<LayerWeights>(load_layer(i));
  else  // validate every layer's metadata up front without materialising it
    for (int i = 0; i < s.n_layers; i++) {  // the layer's last tensor (of the last expert), or its packed form
      const int e = t.layer.back().per_expert() ? s.n_experts - 1 : -1;
      const std::string w = hf_name(t.layer.back(), i, "weight", e);
      if (!src_->has(w) && src_->has(hf_name(t.layer.back(), i, nullptr, e) + ".qweight")) continue;
      (void)src_->info(w);
    }
}

LayerWeights Model::load_layer(int i) const {
  const auto& s = spec;
  LayerWeights w;
  auto lin = [&](const TensorRow& r, int expert, Linear& l) {
    const std::vector<int64_t> shape = row_shape(r, s);
    load_linear(*src_, hf_name(r, i, nullptr, expert), shape[0], shape[1], row_has_bias(r, s), l);
  };
  // a linear's bias is read with its weight (lin), in the order the checks always ran
  w.for_each_tensor(s, [&](const TensorRow& r, int expert, TensorRole role, Tensor& t) {
    if (role == TensorRole::Bias) return;
    if (r.is_norm()) {
      t = load_checked(*src_, hf_name(r, i, "weight"), row_shape(r, s));
      add_norm_offset(t, s, *src_);
    }
    else lin(r, expert, w.linear(r.field, expert));
  });
  w.post_norm_r1 = post_norm_r1_;
  for (const auto& f : load_transforms_) f(w);
  return w;
}

std::shared_ptr<const LayerWeights> Model::layer(int i) const {
  if (i < 0 || i >= spec.n_layers) fail("layer index " + std::to_string(i) + " out of range");
  if (!layers_[i]) {
    if (!resident_)
      for (int j = 0; j < spec.n_layers; j++)
        if (!pinned_[j]) layers_[j].reset();
    layers_[i] = std::make_shared<LayerWeights>(load_layer(i));
  }
  return layers_[i];
}

size_t Model::fp32_bytes() const { return source_fp32_bytes(*src_); }

void Model::set_resident(bool r) {
  resident_ = r;
  if (r)
    for (int i = 0; i < spec.n_layers; i++)
      if (!layers_[i]) layers_[i] = std::make_shared<LayerWeights>(load_layer(i));
}

LayerWeights Model::take_layer(int i) const {
  if (i < 0 || i >= spec.n_layers) fail("layer index " + std::to_string(i) + " out of range");
  if (resident_ || pinned_[i]) return *layer(i);
  for (int j = 0; j < spec.n_layers; j++)
    if (!pinned_[j]) layers_[j].reset();
  return load_layer(i);
}

void Model::release_layer(int i) {
  layers_.at(i).reset();
  pinned_[i] = false;
}

void Model::add_load_transform(std::function<void(LayerWeights&)> f) {
  for (int i = 0; i < spec.n_layers; i++) {
    if (!layers_[i]) continue;
    if (resident_ || pinned_[i]) {  // in memory for good: transformed now (a copy: others may hold it)
      auto w = std::make_shared<LayerWeights>(*layers_[i]);
      f(*w);
      layers_[i] = std::move(w);
    } else {
      layers_[i].reset();  // reloaded through f when next needed
    }
  }
  load_transforms_.push_back(std::move(f));
}

void Model::set_layer(int i, LayerWeights w) {
  layers_.at(i) = std::make_shared<LayerWeights>(std::move(w));
  pinned_[i] = true;
}

void Model::truncate_layers(int n) {
  if (n <= 0 || n > spec.n_layers) fail("--truncate-layers must be in 1.." + std::to_string(spec.n_layers));
  spec.n_layers = n;
  layers_.resize(n);
  pinned_.resize(n);
}

void Model::set_post_norm_r1(std::shared_ptr<const RowTransform> r1) {
  post_norm_r1_ = r1;
  for (auto& l : layers_)
    if (l) l->post_norm_r1 = r1;
}

bool Model::has_post_norm_r1(int i) const {
  if (i < 0 || i >= spec.n_layers) fail("layer index " + std::to_string(i) + " out of range");
  return layers_[i] ? layers_[i]->post_norm_r1 != nullptr : post_norm_r1_ != nullptr;
}

void Model::untie_lm_head() {
  if (!tied()) return;
  if (deferred_) {  // the head reads the embedding's rows with the transforms the embedding had so far
    head_untied_ = true;
    head_fns_ = embed_fns_;
    return;
  }
  lm_head.w = embed;
}

void Model::read_rows(const std::string& name, int64_t row0, int64_t n, float* dst) const {
  const TensorInfo& ti = src_->info(name);
  to_f32_rows(ti, row0, n, dst);
  release_mapped_rows(ti, row0, n);  // the rows are converted: the file's pages need not stay counted
  const int64_t d = ti.shape[1];
  for (int64_t i = 0; i < n * d; i++)
    if (!std::isfinite(dst[i]))
      fail(ti.file, "tensor " + quote(name) + " holds a NaN or Inf (row " + std::to_string(row0 + i / d) + ")");
}

namespace {
void check_rows(const ModelSpec& s, int64_t row0, int64_t n) {
  if (row0 < 0 || n < 0 || row0 > s.vocab || n > s.vocab - row0)
    fail("internal: rows " + std::to_string(row0) + "+" + std::to_string(n) + " of a vocabulary of " + std::to_string(s.vocab));
}
}  // namespace

void Model::read_transformed(const std::string& name, const std::vector<GlobalRowsFn>& fns, int64_t row0, int64_t n,
                             float* dst) const {
  if (fns.empty()) return read_rows(name, row0, n, dst);
  const int64_t d = spec.hidden, B = kGlobalRowBlock, V = spec.vocab;
  std::vector<float> tmp;
  for (int64_t b0 = row0 / B * B; b0 < row0 + n; b0 += B) {  // the transforms see whole aligned blocks
    const int64_t nb = std::min(B, V - b0), lo = std::max(row0, b0), hi = std::min(row0 + n, b0 + nb);
    const bool whole = lo == b0 && hi == b0 + nb;
    if (!whole) tmp.resize((size_t)(nb * d));
    float* blk = whole ? dst + (b0 - row0) * d : tmp.data();
    read_rows(name, b0, nb, blk);
    for (const GlobalRowsFn& f : fns) f(blk, nb);
    if (!whole) std::copy(tmp.data() + (lo - b0) * d, tmp.data() + (hi - b0) * d, dst + (lo - row0) * d);
  }
}

void Model::embed_rows(int64_t row0, int64_t n, float* dst) const {
  check_rows(spec, row0, n);
  const int64_t d = spec.hidden;
  if (!deferred_) {
    if (embed.numel() != spec.vocab * d) fail(path, "internal: the embedding has no fp32 rows to read");
    std::copy(embed.ptr() + row0 * d, embed.ptr() + (row0 + n) * d, dst);
    return;
  }
  read_transformed(embed_name_, embed_fns_, row0, n, dst);
}

void Model::head_rows(int64_t row0, int64_t n, float* dst) const {
  check_rows(spec, row0, n);
  const int64_t d = spec.hidden;
  if (!deferred_) {
    const Tensor& h = head();
    if (h.numel() != spec.vocab * d) fail(path, "internal: the head has no fp32 rows to read");
    std::copy(h.ptr() + row0 * d, h.ptr() + (row0 + n) * d, dst);
    return;
  }
  if (tied()) return embed_rows(row0, n, dst);
  read_transformed(head_stored_ ? head_name_ : embed_name_, head_fns_, row0, n, dst);
}

void Model::embed_rows_of(const int32_t* ids, int64_t n, float* dst) const {
  const int64_t d = spec.hidden, B = kGlobalRowBlock;
  for (int64_t i = 0; i < n; i++) check_rows(spec, ids[i], 1);
  if (!deferred_ || embed_fns_.empty()) {
    for (int64_t i = 0; i < n; i++) {
      if (deferred_) read_rows(embed_name_, ids[i], 1, dst + i * d);
      else std::copy(embed.ptr() + ids[i] * d, embed.ptr() + (ids[i] + 1) * d, dst + i * d);
    }
    return;
  }
  // transformed: each aligned block holding one of the ids read once, in order
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; i++) order[i] = i;
  std::sort(order.begin(), order.end(), [ids](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  std::vector<float> blk;
  int64_t cur = -1;
  for (int64_t i : order) {
    const int64_t b0 = ids[i] / B * B;
    if (b0 != cur) {
      const int64_t nb = std::min(B, spec.vocab - b0);
      blk.resize((size_t)(nb * d));
      read_transformed(embed_name_, embed_fns_, b0, nb, blk.data());
      cur = b0;
    }
    std::copy(blk.data() + (ids[i] - b0) * d, blk.data() + (ids[i] - b0 + 1) * d, dst + i * d);
  }
}

namespace {
void transform_blocks(Tensor& t, const Model::GlobalRowsFn& f) {
  if (t.empty()) return;
  const int64_t V = t.dim(0), d = t.dim(1), B = kGlobalRowBlock;
  for (int64_t b0 = 0; b0 < V; b0 += B) f(t.ptr() + b0 * d, std::min(B, V - b0));
}
}  // namespace

void Model::transform_embed_rows(const GlobalRowsFn& f) {
  if (deferred_) return embed_fns_.push_back(f);
  transform_blocks(embed, f);
}

void Model::transform_head_rows(const GlobalRowsFn& f) {
  if (tied()) fail(path, "internal: the head is transformed while tied to the embedding (untie it first)");
  if (deferred_) return head_fns_.push_back(f);
  transform_blocks(lm_head.w, f);
}

void Model::load_globals() {
  if (!deferred_) return;
  const int64_t V = spec.vocab, d = spec.hidden;
  Tensor e({V, d});
  embed_rows(0, V, e.ptr());
  if (!tied()) {
    lm_head.w = Tensor({V, d});
    head_rows(0, V, lm_head.w.ptr());
  }
  embed = std::move(e);
  deferred_ = false;
  embed_fns_.clear();
  head_fns_.clear();
}

}  // namespace kt
