#include "core/arch.h"

#include <algorithm>
#include <array>

#include "util/error.h"

namespace kt {

namespace {

// Row groups the families share, in HF checkpoint order; each family's layer is a
// concatenation of them (rows(...)), so a row is written once.
// The Llama attention block. Qwen2's q/k/v biases come from its spec (attn_qkv_bias).
constexpr TensorRow kAttnRows[] = {
    {Field::AttnNorm, "input_layernorm", "attn_norm", Dim::Hidden, Dim::None, BiasRule::None, Permute::None},
    {Field::Q, "self_attn.q_proj", "attn_q", Dim::QDim, Dim::Hidden, BiasRule::AttnQKV, Permute::QHeads},
    {Field::K, "self_attn.k_proj", "attn_k", Dim::KVDim, Dim::Hidden, BiasRule::AttnQKV, Permute::KVHeads},
    {Field::V, "self_attn.v_proj", "attn_v", Dim::KVDim, Dim::Hidden, BiasRule::AttnQKV, Permute::None},
    {Field::O, "self_attn.o_proj", "attn_output", Dim::Hidden, Dim::QDim, BiasRule::AttnO, Permute::None},
};
// Qwen3's self_attn.q_norm / k_norm ([head_dim], shared by every head), saved after the projections.
constexpr TensorRow kQkNormRows[] = {
    {Field::QNorm, "self_attn.q_norm", "attn_q_norm", Dim::HeadDim, Dim::None, BiasRule::None, Permute::None},
    {Field::KNorm, "self_attn.k_norm", "attn_k_norm", Dim::HeadDim, Dim::None, BiasRule::None, Permute::None},
};
// The MLP input norm (HF's post_attention_layernorm in the Llama graph).
constexpr TensorRow kMlpNormRows[] = {
    {Field::MlpNorm, "post_attention_layernorm", "ffn_norm", Dim::Hidden, Dim::None, BiasRule::None, Permute::None},
};
constexpr TensorRow kDenseMlpRows[] = {
    {Field::Gate, "mlp.gate_proj", "ffn_gate", Dim::Ffn, Dim::Hidden, BiasRule::Mlp, Permute::None},
    {Field::Up, "mlp.up_proj", "ffn_up", Dim::Ffn, Dim::Hidden, BiasRule::Mlp, Permute::None},
    {Field::Down, "mlp.down_proj", "ffn_down", Dim::Hidden, Dim::Ffn, BiasRule::Mlp, Permute::None},
};
// Mixtral's block_sparse_moe: the router (`gate`) and each expert's w1 (gate), w2 (down), w3
// (up). llama.cpp runs Mixtral as "llama" with stacked expert tensors (ffn_*_exps).
constexpr TensorRow kMixtralMoeRows[] = {
    {Field::Router, "block_sparse_moe.gate", "ffn_gate_inp", Dim::Experts, Dim::Hidden, BiasRule::None, Permute::None},
    {Field::ExpGate, "block_sparse_moe.experts.*.w1", "ffn_gate_exps", Dim::MoeFfn, Dim::Hidden, BiasRule::None, Permute::None},
    {Field::ExpDown, "block_sparse_moe.experts.*.w2", "ffn_down_exps", Dim::Hidden, Dim::MoeFfn, BiasRule::None, Permute::None},
    {Field::ExpUp, "block_sparse_moe.experts.*.w3", "ffn_up_exps", Dim::MoeFfn, Dim::Hidden, BiasRule::None, Permute::None},
};
// Qwen2-MoE's mlp: the router (`gate`), the experts' gate/up/down_proj, the shared expert and
// its sigmoid gate. Every layer sparse (the config reader refuses mlp_only_layers /
// decoder_sparse_step > 1).
constexpr TensorRow kQwen2MoeRows[] = {
    {Field::Router, "mlp.gate", "ffn_gate_inp", Dim::Experts, Dim::Hidden, BiasRule::None, Permute::None},
    {Field::ExpGate, "mlp.experts.*.gate_proj", "ffn_gate_exps", Dim::MoeFfn, Dim::Hidden, BiasRule::None, Permute::None},
    {Field::ExpUp, "mlp.experts.*.up_proj", "ffn_up_exps", Dim::MoeFfn, Dim::Hidden, BiasRule::None, Permute::None},
    {Field::ExpDown, "mlp.experts.*.down_proj", "ffn_down_exps", Dim::Hidden, Dim::MoeFfn, BiasRule::None, Permute::None},
    {Field::ShGate, "mlp.shared_expert.gate_proj", "ffn_gate_shexp", Dim::SharedFfn, Dim::Hidden, BiasRule::None, Permute::None},
    {Field::ShUp, "mlp.shared_expert.up_proj", "ffn_up_shexp", Dim::SharedFfn, Dim::Hidden, BiasRule::None, Permute::None},
    {Field::ShDown, "mlp.shared_expert.down_proj", "ffn_down_shexp", Dim::Hidden, Dim::SharedFfn, BiasRule::None, Permute::None},
    {Field::ShRouter, "mlp.shared_expert_gate", "ffn_gate_inp_shexp", Dim::One, Dim::Hidden, BiasRule::None, Permute::None},
};

template <size_t... N>
constexpr std::array<TensorRow, (N + ...)> rows(const TensorRow (&... groups)[N]) {
  std::array<TensorRow, (N + ...)> out{};
  size_t i = 0;
  ((std::copy(groups, groups + N, out.begin() + i), i += N), ...);
  return out;
}

constexpr auto kLlamaLayer = rows(kAttnRows, kMlpNormRows, kDenseMlpRows);
constexpr auto kQwen3Layer = rows(kAttnRows, kQkNormRows, kMlpNormRows, kDenseMlpRows);
constexpr auto kMixtralLayer = rows(kAttnRows, kMlpNormRows, kMixtralMoeRows);
constexpr auto kQwen2MoeLayer = rows(kAttnRows, kMlpNormRows, kQwen2MoeRows);

// Phi-3: the Llama graph and per-field rows (split at load); the checkpoint fuses q/k/v into
// self_attn.qkv_proj and gate/up into mlp.gate_up_proj (modeling_phi3: rows q, k, v and gate,
// up). The parts' own HF names never reach a file.
constexpr Field kPhi3Qkv[] = {Field::Q, Field::K, Field::V};
constexpr Field kPhi3GateUp[] = {Field::Gate, Field::Up};
constexpr FusedRow kPhi3Fused[] = {
    {"self_attn.qkv_proj", "attn_qkv", kPhi3Qkv},
    {"mlp.gate_up_proj", "ffn_up", kPhi3GateUp},  // llama.cpp's phi3: ffn_up holds gate then up
};

// Gemma 2: four norms per layer. Its post_attention_layernorm normalises the attention output
// before the residual add (not the MLP input, as Llama's of the same name); the MLP input norm
// is pre_feedforward_layernorm. GGUF names as llama.cpp's gemma2.
constexpr TensorRow kGemma2Layer[] = {
    {Field::AttnNorm, "input_layernorm", "attn_norm", Dim::Hidden, Dim::None, BiasRule::None, Permute::None},
    {Field::Q, "self_attn.q_proj", "attn_q", Dim::QDim, Dim::Hidden, BiasRule::AttnQKV, Permute::None},
    {Field::K, "self_attn.k_proj", "attn_k", Dim::KVDim, Dim::Hidden, BiasRule::AttnQKV, Permute::None},
    {Field::V, "self_attn.v_proj", "attn_v", Dim::KVDim, Dim::Hidden, BiasRule::AttnQKV, Permute::None},
    {Field::O, "self_attn.o_proj", "attn_output", Dim::Hidden, Dim::QDim, BiasRule::AttnO, Permute::None},
    {Field::PostAttnNorm, "post_attention_layernorm", "post_attention_norm", Dim::Hidden, Dim::None, BiasRule::None, Permute::None},
    {Field::MlpNorm, "pre_feedforward_layernorm", "ffn_norm", Dim::Hidden, Dim::None, BiasRule::None, Permute::None},
    {Field::Gate, "mlp.gate_proj", "ffn_gate", Dim::Ffn, Dim::Hidden, BiasRule::Mlp, Permute::None},
    {Field::Up, "mlp.up_proj", "ffn_up", Dim::Ffn, Dim::Hidden, BiasRule::Mlp, Permute::None},
    {Field::Down, "mlp.down_proj", "ffn_down", Dim::Hidden, Dim::Ffn, BiasRule::Mlp, Permute::None},
    {Field::PostMlpNorm, "post_feedforward_layernorm", "post_ffw_norm", Dim::Hidden, Dim::None, BiasRule::None, Permute::None},
};

constexpr GlobalRow kLlamaGlobals[] = {
    {Global::Embed, "model.embed_tokens.weight", "token_embd.weight", Dim::None, Dim::Hidden},  // out: vocab
    {Global::FinalNorm, "model.norm.weight", "output_norm.weight", Dim::Hidden, Dim::None},
    {Global::LmHead, "lm_head.weight", "output.weight", Dim::None, Dim::Hidden},  // out: vocab
};

// Order matters for GGUF reading: the first family writing a general.architecture reads it.
const ArchTable kTables[] = {
    {"llama", "llama", true, kLlamaLayer, kLlamaGlobals},
    {"qwen2", "qwen2", false, kLlamaLayer, kLlamaGlobals},
    {"mistral", "llama", true, kLlamaLayer, kLlamaGlobals},  // llama.cpp runs Mistral as llama
    {"qwen3", "qwen3", false, kQwen3Layer, kLlamaGlobals},
    // Gemma 1: the Llama names; its (1 + w) norms, embedding scale and GeGLU are spec fields.
    // GGUF stores the norm multipliers (llama.cpp's converter adds the 1) and no q/k permutation.
    {"gemma", "gemma", false, kLlamaLayer, kLlamaGlobals},
    // Gemma 2: Gemma 1 plus post-norms, score scaling and soft-caps (spec fields).
    {"gemma2", "gemma2", false, kGemma2Layer, kLlamaGlobals},
    // MoE: llama.cpp stacks each expert linear kind into one ffn_*_exps tensor [n_expert, out,
    // in]; Mixtral is its "llama" with experts (read as mixtral when expert_count > 0).
    {"mixtral", "llama", true, kMixtralLayer, kLlamaGlobals},
    {"qwen2_moe", "qwen2moe", false, kQwen2MoeLayer, kLlamaGlobals},
    // Phi-3 / Phi-3.5: Llama rows, fused on disk (HF and llama.cpp's phi3 alike; q/k not permuted).
    {"phi3", "phi3", false, kLlamaLayer, kLlamaGlobals, kPhi3Fused},
};

std::string with_kind(std::string s, const char* kind) {
  if (kind) s += std::string(".") + kind;
  return s;
}

}  // namespace

const TensorRow& ArchTable::row(Field f) const {
  for (const TensorRow& r : layer)
    if (r.field == f) return r;
  fail(std::string("architecture ") + quote(arch) + " has no tensor for field " + std::to_string((int)f));
}

bool ArchTable::has(Field f) const {
  for (const TensorRow& r : layer)
    if (r.field == f) return true;
  return false;
}

const GlobalRow& ArchTable::global(Global g) const {
  for (const GlobalRow& r : globals)
    if (r.id == g) return r;
  fail(std::string("architecture ") + quote(arch) + " has no global tensor " + std::to_string((int)g));
}

const ArchTable& arch_table(const std::string& arch) {
  for (const ArchTable& t : kTables)
    if (arch == t.arch) return t;
  std::string names;
  for (const ArchTable& t : kTables) names += (names.empty() ? "" : ", ") + std::string(t.arch);
  fail("unsupported architecture " + quote(arch) + " (supported: " + names + ")");
}

std::string lm_head_base(const ModelSpec& s) {
  const std::string hf = arch_table(s).global(Global::LmHead).hf;
  return hf.size() > 7 && hf.compare(hf.size() - 7, 7, ".weight") == 0 ? hf.substr(0, hf.size() - 7) : "";
}

const ArchTable* arch_table_for_gguf(const std::string& gguf_arch) {
  if (gguf_arch.empty()) return nullptr;
  for (const ArchTable& t : kTables)
    if (gguf_arch == t.gguf_arch) return &t;
  return nullptr;
}

std::string gguf_arch_list() {
  std::string names;
  for (const ArchTable& t : kTables)
    if (*t.gguf_arch && arch_table_for_gguf(t.gguf_arch) == &t) names += (names.empty() ? "" : ", ") + std::string(t.gguf_arch);
  return names;
}

std::vector<const ArchTable*> all_arch_tables() {
  std::vector<const ArchTable*> v;
  for (const ArchTable& t : kTables) v.push_back(&t);
  return v;
}

int64_t dim_size(Dim d, const ModelSpec& s) {
  switch (d) {
    case Dim::None: return 0;
    case Dim::Hidden: return s.hidden;
    case Dim::QDim: return s.q_dim();
    case Dim::KVDim: return s.kv_dim();
    case Dim::Ffn: return s.ffn;
    case Dim::HeadDim: return s.head_dim;
    case Dim::Experts: return s.n_experts;
    case Dim::MoeFfn: return s.moe_ffn;
    case Dim::SharedFfn: return s.shared_ffn;
    case Dim::One: return 1;
  }
  return 0;
}

std::vector<int64_t> row_shape(const TensorRow& r, const ModelSpec& s) {
  if (r.is_norm()) return {dim_size(r.out, s)};
  return {dim_size(r.out, s), dim_size(r.in, s)};
}

std::vector<int64_t> global_shape(const GlobalRow& g, const ModelSpec& s) {
  const int64_t out = g.out == Dim::None ? s.vocab : dim_size(g.out, s);  // None as out: the vocabulary
  if (g.in == Dim::None) return {out};
  return {out, dim_size(g.in, s)};
}

bool row_has_bias(const TensorRow& r, const ModelSpec& s) {
  switch (r.bias) {
    case BiasRule::None: return false;
    case BiasRule::AttnQKV: return s.attn_qkv_bias;
    case BiasRule::AttnO: return s.attn_o_bias;
    case BiasRule::Mlp: return s.mlp_bias;
  }
  return false;
}

int permute_heads(const TensorRow& r, const ModelSpec& s) {
  return r.permute == Permute::QHeads ? s.n_heads : r.permute == Permute::KVHeads ? s.n_kv_heads : 0;
}

std::string hf_suffix(const TensorRow& r, int expert) {
  std::string suffix = r.hf;
  if (r.per_expert()) {
    if (expert < 0) fail(std::string("tensor ") + quote(r.hf) + " needs an expert index");
    suffix.replace(suffix.find('*'), 1, std::to_string(expert));
  }
  return suffix;
}

std::string hf_name(const TensorRow& r, int layer, const char* kind, int expert) {
  return with_kind(kHfLayerPrefix + std::to_string(layer) + "." + hf_suffix(r, expert), kind);
}

std::string gguf_name(const TensorRow& r, int layer, const char* kind) {
  return with_kind(kGgufLayerPrefix + std::to_string(layer) + "." + r.gguf, kind);
}

const TensorRow* row_by_hf(const ArchTable& t, const std::string& suffix, int* expert) {
  if (expert) *expert = -1;
  for (const TensorRow& r : t.layer) {
    if (!r.per_expert()) {
      if (suffix == r.hf) return &r;
      continue;
    }
    // "<head>*<tail>": the expert index is the decimal digits between head and tail
    const std::string pat = r.hf;
    const size_t star = pat.find('*');
    const size_t tail = pat.size() - star - 1;
    if (suffix.size() <= star + tail || suffix.compare(0, star, pat, 0, star) != 0 ||
        suffix.compare(suffix.size() - tail, tail, pat, star + 1, tail) != 0)
      continue;
    const std::string digits = suffix.substr(star, suffix.size() - tail - star);
    if (digits.empty() || digits.size() > 6 || digits.find_first_not_of("0123456789") != std::string::npos ||
        (digits.size() > 1 && digits[0] == '0'))
      continue;
    if (expert) *expert = std::stoi(digits);
    return &r;
  }
  return nullptr;
}

const TensorRow* row_by_gguf(const ArchTable& t, const std::string& suffix) {
  for (const TensorRow& r : t.layer)
    if (suffix == r.gguf) return &r;
  return nullptr;
}

const FusedRow* fused_of(const ArchTable& t, Field f) {
  for (const FusedRow& r : t.fused)
    for (Field p : r.parts)
      if (p == f) return &r;
  return nullptr;
}

const FusedRow* fused_by_gguf(const ArchTable& t, const std::string& suffix) {
  for (const FusedRow& r : t.fused)
    if (*r.gguf && suffix == r.gguf) return &r;
  return nullptr;
}

std::string gguf_name(const FusedRow& r, int layer, const char* kind) {
  return with_kind(kGgufLayerPrefix + std::to_string(layer) + "." + r.gguf, kind);
}

std::string hf_name(const FusedRow& r, int layer, const char* kind) {
  return with_kind(kHfLayerPrefix + std::to_string(layer) + "." + r.hf, kind);
}

}  // namespace kt
