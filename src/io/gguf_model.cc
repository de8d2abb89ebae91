#include "io/gguf_model.h"

#include <cmath>
#include <cstring>

#include "core/arch.h"
#include "core/spec.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

bool is_gguf_file(const std::string& path) {
  if (is_directory(path) || !file_exists(path)) return false;
  return read_prefix(path, 4) == "GGUF";  // fails on a FIFO or device, naming it
}

namespace {

double get_float(const GGUFFile& f, const std::string& key, double dflt) {
  if (!f.has(key)) return dflt;
  const GGUFValue& v = f.get(key);
  if (v.type == GGUFType::F32 || v.type == GGUFType::F64) return v.f;
  if (v.type == GGUFType::STRING || v.type == GGUFType::ARRAY) fail(f.path(), "GGUF key " + quote(key) + " is not a number");
  return (double)v.i;
}

int get_count(const GGUFFile& f, const std::string& key, int64_t dflt, bool required) {
  if (required && !f.has(key)) fail(f.path(), "missing GGUF key " + quote(key));
  int64_t v = f.get_int(key, dflt);
  if (v < 0 || v > (1 << 24)) fail(f.path(), "GGUF key " + quote(key) + " = " + std::to_string(v) + " is implausible");
  return (int)v;
}

// GGUF tensor name -> HF name ("" if not part of the decoder); *row: the layer row, if any. A
// per-expert row (llama.cpp stacks every expert into one ffn_*_exps tensor) gives the name of
// expert 0; the caller splits the stack.
std::string hf_name_of(const ArchTable& t, const std::string& g, int n_layers, const TensorRow** row) {
  *row = nullptr;
  for (const GlobalRow& r : t.globals)
    if (g == r.gguf) return r.hf;
  if (g.rfind(kGgufLayerPrefix, 0) != 0) return "";
  const size_t start = std::strlen(kGgufLayerPrefix);
  size_t dot = g.find('.', start);
  if (dot == std::string::npos) return "";
  int l = 0;
  for (size_t i = start; i < dot; i++) {
    if (g[i] < '0' || g[i] > '9' || l > n_layers) return "";
    l = l * 10 + (g[i] - '0');
  }
  if (dot == start || l >= n_layers) return "";
  std::string rest = g.substr(dot + 1);
  size_t suf = rest.rfind('.');
  if (suf == std::string::npos) return "";
  // a fused tensor keeps its HF fused name; the model reads it through UnfusedSource
  if (const FusedRow* fr = fused_by_gguf(t, rest.substr(0, suf))) return hf_name(*fr, l, rest.substr(suf + 1).c_str());
  const TensorRow* r = row_by_gguf(t, rest.substr(0, suf));
  if (!r) return "";
  *row = r;
  return hf_name(*r, l, rest.substr(suf + 1).c_str(), r->per_expert() ? 0 : -1);
}

// The expert fields as llama.cpp writes them: Mixtral is its "llama" with expert_count > 0
// (top-k weights renormalised); qwen2moe has expert and shared-expert widths and never
// renormalises.
void read_gguf_experts(const GGUFFile& f, const std::string& a, ModelSpec& s) {
  s.n_experts = get_count(f, a + "expert_count", 0, false);
  if (s.n_experts == 0) {
    if (s.arch == "qwen2_moe") fail(f.path(), "missing GGUF key " + quote(a + "expert_count"));
    return;
  }
  if (s.arch == "llama") s.arch = "mixtral";
  s.top_k = get_count(f, a + "expert_used_count", 0, true);
  if (s.arch == "mixtral") {
    s.moe_ffn = s.ffn;
    s.norm_topk_prob = true;
  } else {
    s.moe_ffn = get_count(f, a + "expert_feed_forward_length", 0, true);
    s.shared_ffn = get_count(f, a + "expert_shared_feed_forward_length", s.ffn, false);
    s.norm_topk_prob = false;
  }
}

// The F32 values of a 1-D GGUF tensor of n elements (rope factors).
std::vector<double> gguf_f32_vector(const GGUFFile& f, const GGUFTensorInfo& t, size_t n) {
  if (t.type != GGML_F32 || t.dims.size() != 1 || t.dims[0] != n || t.nbytes != n * 4)
    fail(f.path(), "tensor " + quote(t.name) + " must be F32 with " + std::to_string(n) + " values (head_dim / 2)");
  std::vector<double> v(n);
  for (size_t i = 0; i < n; i++) {
    float x;
    std::memcpy(&x, t.data + 4 * i, 4);
    v[i] = x;
  }
  return v;
}

// longrope as llama.cpp's phi3 converter writes it: rope_factors_long / rope_factors_short
// tensors, rope.scaling.original_context_length and rope.scaling.attn_factor (no scaling type).
void read_gguf_longrope(const GGUFFile& f, const std::string& a, ModelSpec& s) {
  const GGUFTensorInfo *lf = nullptr, *sf = nullptr;
  for (const auto& t : f.tensors()) {
    if (t.name == kGgufRopeFactorsLong) lf = &t;
    if (t.name == kGgufRopeFactorsShort) sf = &t;
  }
  if (!lf && !sf) return;
  if (!lf || !sf) fail(f.path(), std::string("GGUF has only one of ") + kGgufRopeFactorsLong + " and " + kGgufRopeFactorsShort);
  if (s.head_dim <= 0 || s.head_dim > 4096) return;  // validate() names it
  RopeScaling& r = s.rope_scaling;
  r.type = "longrope";
  r.long_factor = gguf_f32_vector(f, *lf, (size_t)s.head_dim / 2);
  r.short_factor = gguf_f32_vector(f, *sf, (size_t)s.head_dim / 2);
  r.original_max_position = get_count(f, a + "rope.scaling.original_context_length", 0, true);
  if (r.original_max_position <= 0) fail(f.path(), "GGUF key " + quote(a + "rope.scaling.original_context_length") + " must be positive");
  r.factor = (double)s.max_pos / r.original_max_position;  // as transformers' Phi-3 derives it
  r.attention_factor = get_float(f, a + "rope.scaling.attn_factor", 0.0);
  if (!(r.attention_factor >= 0) || r.attention_factor > 1e6)
    fail(f.path(), "GGUF key " + quote(a + "rope.scaling.attn_factor") + " is not a plausible factor");
  // The converter stores transformers' derived factor as f32: keep the double it came from.
  const double derived = r.factor <= 1 ? 1.0 : std::sqrt(1 + std::log(r.factor) / std::log((double)r.original_max_position));
  if (r.attention_factor > 0 && (float)r.attention_factor == (float)derived) r.attention_factor = 0;
}

// llama.cpp's gemma2 keys. It scales the scores by (hidden / heads)^-0.5 for the 46-layer
// model (27B) and head_dim^-0.5 otherwise (query_pre_attn_scalar is not stored); layers 0, 2,
// ... slide over attention.sliding_window keys; the soft-caps default to 50 and 30.
void read_gemma2(const GGUFFile& f, ModelSpec& s) {
  const std::string a = "gemma2.";
  s.query_pre_attn_scalar = s.n_layers == 46 ? (double)(s.hidden / s.n_heads) : (double)s.head_dim;
  s.attn_softcap = (float)get_float(f, a + "attn_logit_softcapping", 50.0);
  s.final_softcap = (float)get_float(f, a + "final_logit_softcapping", 30.0);
  s.sliding_window = get_count(f, a + "attention.sliding_window", 0, true);
  for (int l = 0; l < s.n_layers; l++) s.layer_slides.push_back(l % 2 == 0);
}

}  // namespace

ModelSpec gguf_model_spec(const GGUFFile& f) {
  const std::string arch = f.get_string("general.architecture", "");
  ModelSpec s;
  const ArchTable* table = arch_table_for_gguf(arch);
  if (!table) fail(f.path(), "unsupported GGUF architecture " + quote(arch) + " (supported: " + gguf_arch_list() + ")");
  s.arch = table->arch;
  const std::string a = arch + ".";
  s.hidden = get_count(f, a + "embedding_length", 0, true);
  s.n_layers = get_count(f, a + "block_count", 0, true);
  s.ffn = get_count(f, a + "feed_forward_length", 0, true);
  s.n_heads = get_count(f, a + "attention.head_count", 0, true);
  s.n_kv_heads = get_count(f, a + "attention.head_count_kv", s.n_heads, false);
  s.head_dim = get_count(f, a + "attention.key_length", s.n_heads > 0 ? s.hidden / s.n_heads : 0, false);
  s.max_pos = get_count(f, a + "context_length", 2048, false);
  s.rms_eps = get_float(f, a + "attention.layer_norm_rms_epsilon", 1e-5);
  s.rope_theta = get_float(f, a + "rope.freq_base", 10000.0);
  const std::string scaling = f.get_string(a + "rope.scaling.type", "none");
  if (scaling != "none") fail(f.path(), "unsupported GGUF rope scaling " + quote(scaling) + " (supported: none)");
  const int rope_dims = get_count(f, a + "rope.dimension_count", s.head_dim, false);
  if (rope_dims != s.head_dim)
    fail(f.path(), "GGUF rope.dimension_count " + std::to_string(rope_dims) + " != head_dim " + std::to_string(s.head_dim) +
                       " (partial rotary embeddings are not supported)");
  read_gguf_longrope(f, a, s);
  read_gguf_experts(f, a, s);
  // llama.cpp's phi3 converter writes sliding_window (0: none); transformers' Phi-3 slides every layer
  if (s.arch == "phi3") s.sliding_window = get_count(f, a + "attention.sliding_window", 0, false);
  for (auto& t : f.tensors())
    if (t.name == "rope_freqs.weight")
      fail(f.path(), "rope_freqs.weight (llama3-style frequency scaling in GGUF) is not supported; use the HF checkpoint");
  int64_t vocab = f.get_int(a + "vocab_size", -1);
  bool has_output = false;
  for (auto& t : f.tensors()) {
    if (t.name == table->global(Global::Embed).gguf && t.dims.size() == 2 && vocab < 0) vocab = (int64_t)t.dims[1];
    if (t.name == table->global(Global::LmHead).gguf) has_output = true;
    if (t.name == gguf_name(table->row(Field::Q), 0, "bias")) s.attn_qkv_bias = true;  // Qwen2
  }
  if (vocab <= 0 || vocab > (1 << 24)) fail(f.path(), "cannot tell the vocabulary size (no token_embd.weight)");
  s.vocab = (int)vocab;
  s.tie_embeddings = !has_output;
  set_family_math(s);  // Gemma: GeGLU, embeddings times sqrt(hidden) (norms: stored as multipliers)
  if (s.arch == "gemma2") read_gemma2(f, s);
  s.bos_id = (int)f.get_int("tokenizer.ggml.bos_token_id", 1);
  s.eos_ids = {(int)f.get_int("tokenizer.ggml.eos_token_id", 2)};
  s.validate(f.path());
  return s;
}

GGUFSource::GGUFSource(std::shared_ptr<const GGUFFile> f, const ModelSpec& spec) : file_(std::move(f)) {
  const ArchTable& table = arch_table(spec);
  for (const auto& t : file_->tensors()) {
    const TensorRow* row = nullptr;
    std::string hf = hf_name_of(table, t.name, spec.n_layers, &row);
    if (hf.empty()) continue;
    if (!t.readable) {
      unreadable_[hf] = "tensor " + quote(t.name) + " has ggml type " + ggml_type_name(t.type) +
                        ", which kurtail does not read (supported: F32, F16, BF16, Q8_0)";
      continue;
    }
    TensorInfo ti;
    ti.name = hf;
    ti.file = file_->path();
    ti.dtype = t.type == GGML_F32 ? DType::F32 : t.type == GGML_F16 ? DType::F16 : t.type == GGML_BF16 ? DType::BF16 : DType::Q8_0;
    for (auto it = t.dims.rbegin(); it != t.dims.rend(); ++it) ti.shape.push_back((int64_t)*it);  // ggml order reversed
    ti.data = t.data;
    ti.nbytes = t.nbytes;
    ti.mapped = true;  // inside the GGUFFile's mapping
    // llama.cpp's converter permutes q/k rows for "llama" (its RoPE pairs adjacent values)
    if (table.gguf_permute_qk && row) ti.unpermute_heads = permute_heads(*row, spec);
    // the shared-expert gate: llama.cpp declares it [hidden]; kurtail holds the HF [1, hidden]
    if (row && row->field == Field::ShRouter && ti.shape.size() == 1) ti.shape.insert(ti.shape.begin(), 1);
    if (row && row->per_expert()) {
      add_expert_views(t, *row, std::move(ti), spec);
      continue;
    }
    infos_[hf] = std::move(ti);
  }
}

// A stacked ffn_*_exps tensor [n_experts, out, in] as one [out, in] view per expert (each
// expert's rows are contiguous in every type kurtail reads, Q8_0 blocks included).
void GGUFSource::add_expert_views(const GGUFTensorInfo& t, const TensorRow& row, TensorInfo stack, const ModelSpec& spec) {
  if (stack.shape.size() != 3 || stack.shape[0] != spec.n_experts)
    fail(file_->path(), "tensor " + quote(t.name) + " must stack " + std::to_string(spec.n_experts) +
                            " experts as [n_expert, out, in] (ggml: in, out, n_expert)");
  if (stack.nbytes % (size_t)spec.n_experts != 0)
    fail(file_->path(), "tensor " + quote(t.name) + " does not split into " + std::to_string(spec.n_experts) + " equal experts");
  const size_t slab = stack.nbytes / (size_t)spec.n_experts;
  // the layer index and kind, from the name of expert 0
  const std::string n0 = stack.name;
  const std::string head = kHfLayerPrefix;
  const int layer = std::stoi(n0.substr(head.size(), n0.find('.', head.size()) - head.size()));
  const std::string kind = n0.substr(n0.rfind('.') + 1);
  for (int e = 0; e < spec.n_experts; e++) {
    TensorInfo ti = stack;
    ti.name = hf_name(row, layer, kind.c_str(), e);
    ti.shape = {stack.shape[1], stack.shape[2]};
    ti.data = stack.data + (size_t)e * slab;
    ti.nbytes = slab;
    infos_[ti.name] = std::move(ti);
  }
}

const TensorInfo& GGUFSource::info(const std::string& name) const {
  auto it = infos_.find(name);
  if (it != infos_.end()) return it->second;
  auto u = unreadable_.find(name);
  if (u != unreadable_.end()) fail(file_->path(), u->second);
  fail(file_->path(), "no tensor for " + quote(name) + " in the GGUF file");
}

std::vector<std::string> GGUFSource::names() const {
  std::vector<std::string> out;
  for (auto& [n, _] : infos_) out.push_back(n);
  for (auto& [n, _] : unreadable_) out.push_back(n);
  return out;
}

}  // namespace kt
