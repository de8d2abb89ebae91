// The name table of each architecture family: for every tensor of a decoder layer, its field,
// its Hugging Face and GGUF names, its shape (from the ModelSpec), whether it has a bias, and
// whether GGUF (llama.cpp) stores its rows permuted. Loading (HF, GGUF, llama2.c), saving, GGUF
// export and the quantized-model check all take names and shapes from here; none spells them.
//
// Adding an architecture = one ArchTable (+ a layer function in model/forward.cc when its graph
// differs). Llama, Mistral, Qwen2, Gemma and Phi-3 share the Llama rows (Qwen2's q/k/v bias is
// a spec flag the bias rule reads; Gemma's norm offset, embedding scale and GeGLU are spec
// fields; Phi-3 fuses rows on disk: ArchTable::fused). Qwen3 adds the q/k head norms, Gemma 2
// its post-norms, Mixtral and Qwen2-MoE a router and per-expert rows.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/spec.h"

namespace kt {

// One decoder layer's tensors (model/model.h LayerWeights has one member per field).
// QNorm/KNorm: Qwen3's per-head RMSNorm of q and k after the projection, before RoPE.
// PostAttnNorm/PostMlpNorm: Gemma 2's RMSNorm of the o_proj / down_proj output before its
// residual add (MlpNorm is then its pre_feedforward_layernorm).
// Router .. ShRouter: a mixture-of-experts MLP (Mixtral, Qwen2-MoE) in place of Gate/Up/Down:
// the router [n_experts, hidden], each expert's gate/up/down (one row for all experts: the HF
// name has a '*' where the expert index goes), the shared expert's gate/up/down and its
// sigmoid gate [1, hidden] (Qwen2-MoE).
enum class Field : uint8_t {
  AttnNorm, Q, K, V, O, MlpNorm, Gate, Up, Down, QNorm, KNorm, PostAttnNorm, PostMlpNorm,
  Router, ExpGate, ExpUp, ExpDown, ShGate, ShUp, ShDown, ShRouter
};
constexpr int kNumFields = 21;

// A dimension of the spec; a row's shape is {out, in}, or {out} for a norm (in == None).
// Experts: the router's rows; MoeFfn / SharedFfn: an expert's / the shared expert's width; One: 1.
enum class Dim : uint8_t { None, Hidden, QDim, KVDim, Ffn, HeadDim, Experts, MoeFfn, SharedFfn, One };
// Which ModelSpec flag says the linear has a bias.
enum class BiasRule : uint8_t { None, AttnQKV, AttnO, Mlp };
// Rows llama.cpp's converter permutes for RoPE (rotate_half -> adjacent pairs), per head group.
enum class Permute : uint8_t { None, QHeads, KVHeads };

struct TensorRow {
  Field field;
  const char* hf;    // after "model.layers.N.", before ".weight": "self_attn.q_proj"
  const char* gguf;  // after "blk.N.", before ".weight": "attn_q"
  Dim out, in;
  BiasRule bias;
  Permute permute;
  bool is_norm() const { return in == Dim::None; }
  // One tensor per expert (ExpGate, ExpUp, ExpDown): hf holds '*' for the expert index.
  bool per_expert() const { return field == Field::ExpGate || field == Field::ExpUp || field == Field::ExpDown; }
  // A linear that decides routing (router, shared-expert gate): kept in full precision.
  bool routing() const { return field == Field::Router || field == Field::ShRouter; }
};

// A tensor a family's checkpoint stores fused: the rows of `parts`, concatenated along out in
// that order (Phi-3's self_attn.qkv_proj = q, k, v; mlp.gate_up_proj = gate, up). Every kind a
// linear stores per output row (weight, bias, qscale, packed qweight) is split at load and
// concatenated at save; per-linear scalars (qbits) are shared by the parts.
struct FusedRow {
  const char* hf;    // after "model.layers.N.", before ".weight": "self_attn.qkv_proj"
  const char* gguf;  // after "blk.N.", before ".weight": "attn_qkv" ("" when the GGUF form splits)
  std::span<const Field> parts;
};

// Tensors outside the layers. LmHead is absent when tied to Embed.
enum class Global : uint8_t { Embed, FinalNorm, LmHead };
struct GlobalRow {
  Global id;
  const char* hf;    // full name: "model.embed_tokens.weight"
  const char* gguf;  // full name: "token_embd.weight"
  Dim out, in;
};

struct ArchTable {
  const char* arch;       // ModelSpec::arch
  const char* gguf_arch;  // general.architecture written/read ("llama" for Mistral: llama.cpp runs it as llama)
  bool gguf_permute_qk;   // the GGUF form of this family stores q/k rows permuted (Permute rows)
  std::span<const TensorRow> layer;  // in checkpoint order: the order layers load and save in
  std::span<const GlobalRow> globals;
  // Tensors the checkpoint fuses (Phi-3 self_attn.qkv_proj, mlp.gate_up_proj): loading splits
  // them into the rows' fields (model/fused_source.h) and saving concatenates them back
  // (fuse_named_tensors), so outputs keep the family's names. Empty for most families.
  std::span<const FusedRow> fused = {};

  const TensorRow& row(Field f) const;  // fails if the family has no such tensor
  const GlobalRow& global(Global g) const;
  bool has(Field f) const;
};

// The table of ModelSpec::arch; fails (naming the supported ones) for an unknown family.
const ArchTable& arch_table(const std::string& arch);
inline const ArchTable& arch_table(const ModelSpec& s) { return arch_table(s.arch); }
// The head's name as a linear ("lm_head" for "lm_head.weight", the base of its .qweight, .qscale
// and .qbits); empty when the family names it otherwise (it then holds no scales).
std::string lm_head_base(const ModelSpec& s);
// The table a GGUF general.architecture reads as (the first family writing that name), or null.
const ArchTable* arch_table_for_gguf(const std::string& gguf_arch);
// "llama, qwen2": the GGUF architectures kurtail reads, for messages.
std::string gguf_arch_list();
std::vector<const ArchTable*> all_arch_tables();

int64_t dim_size(Dim d, const ModelSpec& s);
// {out, in} for a linear, {out} for a norm.
std::vector<int64_t> row_shape(const TensorRow& r, const ModelSpec& s);
std::vector<int64_t> global_shape(const GlobalRow& g, const ModelSpec& s);
bool row_has_bias(const TensorRow& r, const ModelSpec& s);
// Head count of the row's RoPE permutation (0: none); the GGUF form applies it only when the
// table's gguf_permute_qk is set, llama2.c (interleaved RoPE) always.
int permute_heads(const TensorRow& r, const ModelSpec& s);

// "model.layers.3.self_attn.q_proj" (+ "." + kind when kind is given: "weight", "bias", "qscale", ...);
// a per-expert row needs its expert: "model.layers.3.block_sparse_moe.experts.5.w1".
std::string hf_name(const TensorRow& r, int layer, const char* kind = nullptr, int expert = -1);
// The part after "model.layers.N.": "self_attn.q_proj", "block_sparse_moe.experts.5.w1".
std::string hf_suffix(const TensorRow& r, int expert = -1);
// "blk.3.attn_q" (+ "." + kind).
std::string gguf_name(const TensorRow& r, int layer, const char* kind = nullptr);
// The row whose HF (GGUF) suffix is `suffix` ("self_attn.q_proj", "attn_q"), or null. Callers
// split "<prefix><layer>." and ".<kind>" off themselves (each keeps its own layer-index rules).
// A per-expert row matches any decimal expert index ("block_sparse_moe.experts.5.w1"), returned
// in *expert (-1 for the other rows) when expert is given.
const TensorRow* row_by_hf(const ArchTable& t, const std::string& suffix, int* expert = nullptr);
const TensorRow* row_by_gguf(const ArchTable& t, const std::string& suffix);
// The fused entry whose GGUF suffix is `suffix` ("attn_qkv"), or null. Readers look here first:
// a fused GGUF name may equal a part's (Phi-3's ffn_up holds gate and up).
const FusedRow* fused_by_gguf(const ArchTable& t, const std::string& suffix);
// The fused entry containing field f, or null (the field is stored on its own).
const FusedRow* fused_of(const ArchTable& t, Field f);
// "model.layers.3.self_attn.qkv_proj" (+ "." + kind).
std::string hf_name(const FusedRow& r, int layer, const char* kind = nullptr);
// "blk.3.attn_qkv" (+ "." + kind).
std::string gguf_name(const FusedRow& r, int layer, const char* kind = nullptr);
constexpr const char* kHfLayerPrefix = "model.layers.";
constexpr const char* kGgufLayerPrefix = "blk.";

}  // namespace kt
