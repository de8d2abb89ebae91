// The name table of each architecture family: for every tensor of a decoder layer, its field,
// its Hugging Face and GGUF names, its shape (from the ModelSpec), whether it has a bias, and
// whether GGUF (llama.cpp) stores its rows permuted. Loading (HF, GGUF, llama2.c), saving, GGUF
// export and the quantized-model check all take names and shapes from here; none spells them.
//
// Adding an architecture = one ArchTable (+ a layer function in model/forward.cc when its graph
// differs). Llama, Mistral and Qwen2 share the Llama rows; Qwen2 differs only in its spec
// (attn_qkv_bias), which the bias rule reads. Qwen3 adds the q/k head norms.
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
enum class Field : uint8_t { AttnNorm, Q, K, V, O, MlpNorm, Gate, Up, Down, QNorm, KNorm, PostAttnNorm, PostMlpNorm };
constexpr int kNumFields = 13;

// A dimension of the spec; a row's shape is {out, in}, or {out} for a norm (in == None).
enum class Dim : uint8_t { None, Hidden, QDim, KVDim, Ffn, HeadDim };
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
  // A family whose checkpoint fuses tensors (Phi-3 self_attn.qkv_proj, mlp.gate_up_proj) will
  // list them here as {fused HF suffix, the rows it concatenates along out}: loading splits
  // them into the rows' fields and saving concatenates them back, so outputs keep the
  // family's names. No table has one yet.

  const TensorRow& row(Field f) const;  // fails if the family has no such tensor
  const GlobalRow& global(Global g) const;
  bool has(Field f) const;
};

// The table of ModelSpec::arch; fails (naming the supported ones) for an unknown family.
const ArchTable& arch_table(const std::string& arch);
inline const ArchTable& arch_table(const ModelSpec& s) { return arch_table(s.arch); }
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

// "model.layers.3.self_attn.q_proj" (+ "." + kind when kind is given: "weight", "bias", "qscale", ...).
std::string hf_name(const TensorRow& r, int layer, const char* kind = nullptr);
// "blk.3.attn_q" (+ "." + kind).
std::string gguf_name(const TensorRow& r, int layer, const char* kind = nullptr);
// The row whose HF (GGUF) suffix is `suffix` ("self_attn.q_proj", "attn_q"), or null. Callers
// split "<prefix><layer>." and ".<kind>" off themselves (each keeps its own layer-index rules).
const TensorRow* row_by_hf(const ArchTable& t, const std::string& suffix);
const TensorRow* row_by_gguf(const ArchTable& t, const std::string& suffix);
constexpr const char* kHfLayerPrefix = "model.layers.";
constexpr const char* kGgufLayerPrefix = "blk.";

}  // namespace kt
