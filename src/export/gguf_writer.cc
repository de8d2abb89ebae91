// GGUF writer (v3): llama.cpp metadata + tokenizer, F32 or F16 matrices (1-D tensors stay F32,
// as llama.cpp's converter writes them), data streamed layer by layer into a temp file.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "export/gguf_writer.h"
#include "io/gguf_model.h"
#include "io/tokenizer.h"
#include "model/model.h"
#include "model/pack_linear.h"
#include "model/rope.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"

namespace kt {

namespace {

constexpr uint64_t kAlign = 32;

// GGUF metadata encoder.
struct KVWriter {
  std::string buf;
  uint64_t count = 0;
  template <class T>
  void raw(T v) { buf.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) {
    raw<uint64_t>(s.size());
    buf += s;
  }
  void key(const std::string& k, GGUFType t) {
    str(k);
    raw<uint32_t>((uint32_t)t);
    count++;
  }
  void u32(const std::string& k, uint32_t v) { key(k, GGUFType::U32); raw(v); }
  void f32(const std::string& k, float v) { key(k, GGUFType::F32); raw(v); }
  void boolean(const std::string& k, bool v) { key(k, GGUFType::BOOL); raw<uint8_t>(v); }
  void string(const std::string& k, const std::string& v) { key(k, GGUFType::STRING); str(v); }
  void strings(const std::string& k, const std::vector<std::string>& v) {
    key(k, GGUFType::ARRAY);
    raw<uint32_t>((uint32_t)GGUFType::STRING);
    raw<uint64_t>(v.size());
    for (auto& s : v) str(s);
  }
  void f32s(const std::string& k, const std::vector<float>& v) {
    key(k, GGUFType::ARRAY);
    raw<uint32_t>((uint32_t)GGUFType::F32);
    raw<uint64_t>(v.size());
    for (float x : v) raw(x);
  }
  void i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, GGUFType::ARRAY);
    raw<uint32_t>((uint32_t)GGUFType::I32);
    raw<uint64_t>(v.size());
    for (int32_t x : v) raw(x);
  }
};

struct OutTensor {
  std::string name;            // GGUF name
  std::vector<int64_t> shape;  // HF order [out, in]
  uint32_t type;
  uint64_t offset = 0, nbytes = 0;
  int layer = -1;              // -1: global
  Global global = Global::Embed;       // which global (layer < 0)
  Field field = Field::AttnNorm;       // which tensor of the layer (layer >= 0)
  TensorRole role = TensorRole::Weight;
  int permute_heads = 0;       // llama q/k: HF rotate_half rows -> llama.cpp's adjacent pairs
  const FusedRow* fused = nullptr;  // a fused tensor (Phi-3 attn_qkv): its parts' rows, stacked
  bool experts = false;        // an ffn_*_exps tensor: every expert's [out, in], stacked
  std::vector<float> values;   // a tensor of the spec, not of the weights (longrope factors)
};

// The GGUF output: an exclusive temp that becomes PATH on commit() (util/output.h).
class GgufOut {
 public:
  GgufOut(const std::string& path, OutputPolicy policy) : out_(path, std::move(policy)) {}
  void write(const void* p, size_t n) { out_.write(p, n); }
  void pad_to(uint64_t pos) {
    static const char zeros[kAlign] = {};
    while (out_.pos() < pos) out_.write(zeros, std::min<uint64_t>(kAlign, pos - out_.pos()));
  }
  void commit() { out_.commit(); }

 private:
  OutputFile out_;
};

// The tensor of field f (for a per-expert field: of `expert`).
const Tensor* pick(const LayerWeights& w, Field f, TensorRole role, int expert = -1) {
  if (f == Field::QNorm || f == Field::KNorm || f == Field::PostAttnNorm || f == Field::PostMlpNorm)
    return &w.norm(f);  // norms no site is fed by
  for (const auto& g : site_consumers(w)) {
    if (g.norm && g.norm_field == f) return g.norm;
    for (const auto& c : g.linears)
      if (c.field == f && (expert < 0 || c.expert == expert)) return role == TensorRole::Bias ? &c.lin->b : &c.lin->w;
  }
  return nullptr;
}

// A packed model (quantize's default output) holds its linears as codes and scales; GGUF takes
// floats. Each packed linear of the layer becomes its grid values (unpack_linear: the weights the
// fake-quant model holds, exactly), in a copy of the one layer being written.
std::shared_ptr<const LayerWeights> with_float_weights(std::shared_ptr<const LayerWeights> w) {
  bool packed = false;
  w->for_each_linear([&](LinearId, const Linear& l) { packed = packed || (l.packed && l.w.data.empty()); });
  if (!packed) return w;
  auto f = std::make_shared<LayerWeights>(*w);
  f->for_each_linear([](LinearId, Linear& l) { unpack_linear(l); });
  return f;
}

// GGUF v3 magic, version, counts and the metadata; tensor infos (if any) follow.
KVWriter gguf_header(uint64_t n_tensors, const KVWriter& kv) {
  KVWriter head;
  head.buf = "GGUF";
  head.raw<uint32_t>(3);
  head.raw<uint64_t>(n_tensors);
  head.raw<uint64_t>(kv.count);
  head.buf += kv.buf;
  return head;
}

VocabExport export_or_fail(const Tokenizer& t, const std::string& path) {
  VocabExport voc;
  if (!t.export_vocab(&voc))
    fail(path, "the " + t.kind() + " tokenizer cannot be expressed in GGUF (SentencePiece or GPT-2 BPE only)");
  return voc;
}

// Checkpoints often have more embedding rows than tokens (padded vocabularies: Phi-3 32064 rows
// for 32011 tokens, Qwen2's 151936 for 151646; random-weight benchmark checkpoints of 32000
// rows with a smaller tokenizer). llama.cpp takes n_vocab from the token list and checks the
// embedding against it, so the list is padded as its converter does: "[PAD<id>]" tokens of
// type UNUSED, score -1000. A tokenizer larger than the embedding cannot be run at all.
void pad_vocab(VocabExport& voc, int64_t vocab, const std::string& path) {
  const int64_t have = (int64_t)voc.tokens.size();
  if (have > vocab)
    fail(path, "the tokenizer has " + std::to_string(have) + " tokens, more than the model's " +
                   std::to_string(vocab) + " embedding rows");
  for (int64_t id = have; id < vocab; id++) {
    voc.tokens.push_back("[PAD" + std::to_string(id) + "]");
    if (voc.model == "llama") voc.scores.push_back(-1000.0f);
    voc.types.push_back(5);  // UNUSED
  }
}

void add_tokenizer_kv(KVWriter& kv, const Tokenizer& t, const VocabExport& voc) {
  kv.string("tokenizer.ggml.model", voc.model);
  kv.string("tokenizer.ggml.pre", voc.model == "gpt2" ? "gpt-2" : "default");
  kv.strings("tokenizer.ggml.tokens", voc.tokens);
  if (voc.model == "llama") kv.f32s("tokenizer.ggml.scores", voc.scores);
  kv.i32s("tokenizer.ggml.token_type", voc.types);
  if (voc.model == "gpt2") kv.strings("tokenizer.ggml.merges", voc.merges);
  if (t.bos >= 0) kv.u32("tokenizer.ggml.bos_token_id", (uint32_t)t.bos);
  if (t.eos >= 0) kv.u32("tokenizer.ggml.eos_token_id", (uint32_t)t.eos);
  kv.boolean("tokenizer.ggml.add_bos_token", t.add_bos);
  if (voc.model == "llama") kv.boolean("tokenizer.ggml.add_space_prefix", voc.add_space_prefix);
}

OutputPolicy gguf_policy(const std::string& path, bool force, const std::vector<std::string>& inputs) {
  OutputPolicy p;
  p.force = force;
  p.kind = "GGUF file";
  p.is_own_output = is_kurtail_gguf;
  p.inputs = inputs;
  return p;
}

// llama.cpp's gemma2 slides on layers 0, 2, 4, ... (and every Gemma 2 checkpoint does).
bool gemma2_pattern(const ModelSpec& s) {
  for (int l = 0; l < s.n_layers; l++)
    if ((s.window(l) > 0) != (l % 2 == 0)) return false;
  return true;
}

// llama.cpp's gemma2 does not store query_pre_attn_scalar: it scales the scores by
// (hidden / heads)^-0.5 for the 46-layer (27B) model and head_dim^-0.5 otherwise. Where the
// config's scalar differs, W_q (and its bias) carry the ratio, so that llama.cpp (and kurtail
// reading the file) compute the config's scores (RoPE is linear). 1 for the real checkpoints.
float gemma2_q_factor(const ModelSpec& s) {
  if (s.arch != "gemma2") return 1.0f;
  const double llama_cpp = s.n_layers == 46 ? (double)(s.hidden / s.n_heads) : (double)s.head_dim;
  return s.query_pre_attn_scalar == llama_cpp ? 1.0f : (float)std::sqrt(llama_cpp / s.query_pre_attn_scalar);
}

}  // namespace

void write_gguf_vocab(const Tokenizer& t, const std::string& path) {
  VocabExport voc = export_or_fail(t, path);
  KVWriter kv;
  kv.string("general.architecture", "llama");
  kv.string("general.name", "kurtail vocabulary");
  add_tokenizer_kv(kv, t, voc);
  write_file_atomic(path, gguf_header(0, kv).buf);
}

bool is_kurtail_gguf(const std::string& path) {
  try {
    GGUFFile f(path);
    return f.has(kKurtailWriterKey);
  } catch (const Error&) {
    return false;
  }
}

void write_gguf(const Model& m, const std::string& path, GGUFOutType type, const std::string& name, bool force,
                const std::vector<std::string>& inputs) {
  const ModelSpec& s = m.spec;
  const ArchTable* table = nullptr;
  for (const ArchTable* t : all_arch_tables())
    if (s.arch == t->arch) table = t;
  if (!table) fail(path, "cannot write GGUF for arch " + s.arch);
  if (!*table->gguf_arch) fail(path, "GGUF export of " + quote(s.arch) + " models is not supported yet");
  if (s.rope_style != RopeStyle::RotateHalf) fail(path, "GGUF export needs HF (rotate_half) RoPE weights");
  // llama.cpp's phi3 carries longrope (factor tensors + keys) and sliding_window (every layer,
  // as transformers' Phi-3); its gemma2 the alternating window; the other architectures have
  // neither in kurtail's GGUF.
  const bool phi3 = std::string(table->gguf_arch) == "phi3";
  if (!s.rope_scaling.type.empty() && !(phi3 && s.rope_scaling.type == "longrope"))
    fail(path, "GGUF export of rope scaling " + quote(s.rope_scaling.type) + " is not supported");
  if (s.sliding_window > 0 && !phi3 && !(s.arch == "gemma2" && gemma2_pattern(s)))
    fail(path, "GGUF export of sliding-window attention is not supported" +
                   std::string(s.arch == "gemma2" ? " other than on layers 0, 2, 4, ... (llama.cpp's gemma2)" : ""));
  if (s.n_layers > 0 && m.layer(0)->post_norm_r1)
    fail(path, "GGUF export of a model whose R1 runs online after its post-norms is not supported");
  const bool gemma = s.arch == "gemma" || s.arch == "gemma2";
  if (gemma && !m.tied())  // llama.cpp's gemma reads the embedding as the output
    fail(path, "GGUF export of a " + s.arch + " model with its own lm_head (llama.cpp ties it to the embedding; "
               "rotations and norm folding untie it)");
  if (s.attn_o_bias || s.mlp_bias) fail(path, "GGUF export of o_proj/MLP biases is not supported");
  if (s.arch == "qwen2_moe" && s.norm_topk_prob)
    fail(path, "GGUF export of a Qwen2-MoE model with norm_topk_prob is not supported (llama.cpp's qwen2moe never "
               "renormalises the top-k weights)");
  if (!m.tokenizer) fail(path, "the model has no tokenizer to write");
  VocabExport voc = export_or_fail(*m.tokenizer, path);
  pad_vocab(voc, s.vocab, path);
  std::vector<std::string> all_inputs = inputs;
  all_inputs.push_back(m.path);
  if (!m.tokenizer_path.empty()) all_inputs.push_back(m.tokenizer_path);
  check_output(path, gguf_policy(path, force, all_inputs), /*is_dir=*/false);
  const std::string arch = table->gguf_arch;
  const bool permute_qk = table->gguf_permute_qk;
  auto mat_type_for = [&](int64_t in) -> uint32_t {
    if (type == GGUFOutType::Q8_0) return in % 32 == 0 ? GGML_Q8_0 : GGML_F16;
    return type == GGUFOutType::F16 ? GGML_F16 : type == GGUFOutType::BF16 ? GGML_BF16 : GGML_F32;
  };
  const uint32_t mat_type = mat_type_for(s.hidden);
  const float q_factor = gemma2_q_factor(s);

  // Tensor list, in llama.cpp's usual order: embedding; per layer and site, the norm, the
  // consumers' weights, then their biases; final norm; output.
  std::vector<OutTensor> ts;
  if (s.rope_scaling.type == "longrope")  // llama.cpp's converter writes them first
    for (auto [name, v] : {std::pair{kGgufRopeFactorsLong, &s.rope_scaling.long_factor},
                           std::pair{kGgufRopeFactorsShort, &s.rope_scaling.short_factor}}) {
      OutTensor o{name, {(int64_t)v->size()}, GGML_F32};
      o.values.assign(v->begin(), v->end());
      ts.push_back(o);
    }
  auto add_global = [&](Global g, uint32_t ty) {
    const GlobalRow& r = table->global(g);
    OutTensor o{r.gguf, global_shape(r, s), ty};
    o.global = g;
    ts.push_back(o);
  };
  add_global(Global::Embed, mat_type);
  // site_consumers' structure depends on the spec (dense, or its experts), not on the weights
  LayerWeights shape_of_a_layer;
  if (s.moe()) {
    shape_of_a_layer.experts.resize((size_t)s.n_experts);
    if (s.shared_ffn > 0) shape_of_a_layer.shared.down.w.shape = {s.hidden, s.shared_ffn};
  }
  for (int l = 0; l < s.n_layers; l++) {
    auto add = [&](const TensorRow& r, TensorRole role) {
      const char* kind = role == TensorRole::Bias ? "bias" : "weight";
      std::vector<int64_t> shape = row_shape(r, s);
      if (role == TensorRole::Bias) shape.resize(1);
      OutTensor o{gguf_name(r, l, kind), shape, shape.size() == 1 ? (uint32_t)GGML_F32 : mat_type_for(shape[1])};
      o.layer = l;
      o.field = r.field;
      o.role = role;
      o.permute_heads = permute_qk ? permute_heads(r, s) : 0;
      ts.push_back(o);
    };
    // A fused tensor (ArchTable::fused) is listed once, where its first part comes.
    auto add_linear = [&](Field f, TensorRole role) {
      const FusedRow* fr = fused_of(*table, f);
      if (!fr) return add(table->row(f), role);
      if (f != fr->parts[0]) return;
      add(table->row(f), role);
      OutTensor& o = ts.back();
      o.name = gguf_name(*fr, l, role == TensorRole::Bias ? "bias" : "weight");
      o.fused = fr;
      o.shape[0] = 0;
      for (Field p : fr->parts) o.shape[0] += row_shape(table->row(p), s)[0];
      o.permute_heads = 0;
    };
    // llama.cpp's MoE tensors: the router and the shared-expert gate in F32 (the latter 1-D, as
    // llama.cpp declares it), each expert kind stacked once, where expert 0 comes.
    auto add_moe = [&](Field f, int expert) {
      const TensorRow& r = table->row(f);
      if (r.per_expert() && expert != 0) return;
      add(r, TensorRole::Weight);
      OutTensor& o = ts.back();
      if (r.routing()) o.type = GGML_F32;
      if (f == Field::ShRouter) o.shape = {s.hidden};
      if (r.per_expert()) {
        o.shape.insert(o.shape.begin(), s.n_experts);
        o.experts = true;
      }
    };
    for (const auto& g : site_consumers(shape_of_a_layer)) {
      if (g.norm) add(table->row(g.norm_field), TensorRole::Weight);
      for (const auto& c : g.linears) {
        if (s.moe() && (c.expert >= 0 || table->row(c.field).routing())) add_moe(c.field, c.expert);
        else add_linear(c.field, TensorRole::Weight);
      }
      for (const auto& c : g.linears)
        if (row_has_bias(table->row(c.field), s)) add_linear(c.field, TensorRole::Bias);
      if (g.site == Site::AttnIn)  // Qwen3's q/k head norms, after the projections (as llama.cpp lists them)
        for (Field f : {Field::QNorm, Field::KNorm})
          for (const TensorRow& r : table->layer)
            if (r.field == f) add(r, TensorRole::Weight);
      // Gemma 2's post-norms, after the linear whose output they normalise
      const Field post = g.site == Site::OIn ? Field::PostAttnNorm : g.site == Site::DownIn ? Field::PostMlpNorm : Field::AttnNorm;
      if (post != Field::AttnNorm && table->has(post)) add(table->row(post), TensorRole::Weight);
    }
  }
  add_global(Global::FinalNorm, GGML_F32);
  if (!m.tied()) add_global(Global::LmHead, mat_type);
  uint64_t off = 0;
  for (auto& t : ts) {
    const size_t n = Tensor::numel_of(t.shape);
    t.nbytes = t.type == GGML_Q8_0 ? n / 32 * sizeof(BlockQ8_0) : n * (t.type == GGML_F16 || t.type == GGML_BF16 ? 2 : 4);
    t.offset = off;
    off = (off + t.nbytes + kAlign - 1) / kAlign * kAlign;
  }

  KVWriter kv;
  kv.string("general.architecture", arch);
  kv.string("general.name", name);
  kv.string(kKurtailWriterKey, "kurtail");  // lets --force recognise its own output
  // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32
  kv.u32("general.file_type", type == GGUFOutType::Q8_0 ? 7 : type == GGUFOutType::F16 ? 1 : type == GGUFOutType::BF16 ? 32 : 0);
  kv.u32("general.alignment", (uint32_t)kAlign);
  const std::string a = arch + ".";
  kv.u32(a + "context_length", (uint32_t)s.max_pos);
  kv.u32(a + "embedding_length", (uint32_t)s.hidden);
  kv.u32(a + "block_count", (uint32_t)s.n_layers);
  kv.u32(a + "feed_forward_length", (uint32_t)s.ffn);
  kv.u32(a + "rope.dimension_count", (uint32_t)s.head_dim);
  kv.u32(a + "attention.head_count", (uint32_t)s.n_heads);
  kv.u32(a + "attention.head_count_kv", (uint32_t)s.n_kv_heads);
  if (s.head_dim * s.n_heads != s.hidden) {
    kv.u32(a + "attention.key_length", (uint32_t)s.head_dim);
    kv.u32(a + "attention.value_length", (uint32_t)s.head_dim);
  }
  kv.f32(a + "attention.layer_norm_rms_epsilon", (float)s.rms_eps);
  kv.f32(a + "rope.freq_base", (float)s.rope_theta);
  kv.u32(a + "vocab_size", (uint32_t)s.vocab);
  if (s.moe()) {  // as llama.cpp's converter writes them (Mixtral: feed_forward_length is the expert width)
    kv.u32(a + "expert_count", (uint32_t)s.n_experts);
    kv.u32(a + "expert_used_count", (uint32_t)s.top_k);
    if (s.arch == "qwen2_moe") {
      kv.u32(a + "expert_feed_forward_length", (uint32_t)s.moe_ffn);
      kv.u32(a + "expert_shared_feed_forward_length", (uint32_t)s.shared_ffn);
    }
  }
  if (phi3) {  // as llama.cpp's Phi3MiniModel writes them
    kv.u32(a + "attention.sliding_window", (uint32_t)s.sliding_window);
    if (s.rope_scaling.type == "longrope") {
      kv.u32(a + "rope.scaling.original_context_length", (uint32_t)s.rope_scaling.original_max_position);
      kv.f32(a + "rope.scaling.attn_factor", (float)rope_freqs(s, 1).attention_factor);
    }
  }
  if (s.arch == "gemma2") {
    kv.f32(a + "attn_logit_softcapping", s.attn_softcap);
    kv.f32(a + "final_logit_softcapping", s.final_softcap);
    kv.u32(a + "attention.sliding_window", (uint32_t)s.sliding_window);
  }
  add_tokenizer_kv(kv, *m.tokenizer, voc);

  KVWriter head = gguf_header(ts.size(), kv);
  for (auto& t : ts) {
    head.str(t.name);
    head.raw<uint32_t>((uint32_t)t.shape.size());
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) head.raw<uint64_t>((uint64_t)*it);  // ggml order
    head.raw<uint32_t>(t.type);
    head.raw<uint64_t>(t.offset);
  }
  const uint64_t data_start = (head.buf.size() + kAlign - 1) / kAlign * kAlign;

  GgufOut out(path, gguf_policy(path, force, all_inputs));
  out.write(head.buf.data(), head.buf.size());
  out.pad_to(data_start);
  std::shared_ptr<const LayerWeights> cur;
  int cur_layer = -1;
  std::vector<float> rows;
  std::vector<uint16_t> half;
  for (auto& t : ts) {
    const Tensor* src = nullptr;
    Tensor stacked;  // a fused tensor's parts, or a spec tensor's values
    if (!t.values.empty()) {
      stacked = Tensor::from(t.values);
      src = &stacked;
    } else if (t.layer < 0) {
      src = t.global == Global::Embed ? &m.embed : t.global == Global::FinalNorm ? &m.final_norm : &m.lm_head.w;
      if (src == &m.lm_head.w && src->data.empty() && m.lm_head.packed) {  // a packed head: its grid values
        Linear head = m.lm_head;  // no fp32 weights to copy: shares the packed form
        unpack_linear(head);
        stacked = std::move(head.w);
        src = &stacked;
      }
    } else {
      if (t.layer != cur_layer) {
        cur = with_float_weights(m.layer(t.layer));  // one layer in memory at a time
        cur_layer = t.layer;
      }
      src = pick(*cur, t.field, t.role);
      if (t.experts) {
        stacked = Tensor(t.shape);
        const size_t pn = stacked.data.size() / (size_t)s.n_experts;
        for (int e = 0; e < s.n_experts; e++) {
          const Tensor* part = pick(*cur, t.field, t.role, e);
          if (!part || part->data.size() != pn)
            fail(path, "tensor " + quote(t.name) + " has no fp32 weights of the expected shape");
          std::copy(part->data.begin(), part->data.end(), stacked.data.begin() + (ptrdiff_t)(e * pn));
        }
        src = &stacked;
      }
      if (t.fused) {
        stacked = Tensor(t.shape);
        size_t at = 0;
        for (Field p : t.fused->parts) {
          const Tensor* part = pick(*cur, p, t.role);
          const std::vector<int64_t> ps = row_shape(table->row(p), s);
          const size_t pn = t.role == TensorRole::Bias ? (size_t)ps[0] : Tensor::numel_of(ps);
          if (!part || part->data.size() != pn || at + pn > stacked.data.size())
            fail(path, "tensor " + quote(t.name) + " has no fp32 weights of the expected shape");
          std::copy(part->data.begin(), part->data.end(), stacked.data.begin() + (ptrdiff_t)at);
          at += pn;
        }
        src = &stacked;
      }
    }
    const size_t n = Tensor::numel_of(t.shape);
    if (!src || src->data.size() != n)
      fail(path, "tensor " + quote(t.name) + " has no fp32 weights of the expected shape");
    const float* p = src->data.data();
    if (t.layer >= 0 && t.field == Field::Q && q_factor != 1.0f) {  // see gemma2_q_factor
      rows.assign(p, p + n);
      for (float& v : rows) v *= q_factor;
      p = rows.data();
    }
    if (t.permute_heads > 0) {
      rows.resize(n);
      permute_qk_rows(p, rows.data(), t.shape[0], (int64_t)n / t.shape[0], t.permute_heads, /*to_gguf=*/true);
      p = rows.data();
    }
    out.pad_to(data_start + t.offset);
    if (t.type == GGML_Q8_0) {
      std::vector<BlockQ8_0> q(n / 32);
      quantize_row_q8_0_ref(p, q.data(), n);
      out.write(q.data(), q.size() * sizeof(BlockQ8_0));
    } else if (t.type == GGML_F16 || t.type == GGML_BF16) {
      half.resize(n);
      for (size_t i = 0; i < n; i++) half[i] = t.type == GGML_F16 ? f32_to_f16(p[i]) : f32_to_bf16(p[i]);
      out.write(half.data(), n * 2);
    } else {
      out.write(p, n * 4);
    }
  }
  check_interrupted();  // a signal during the writes: the temp goes, OUT stays as it was
  out.commit();
}

}  // namespace kt
