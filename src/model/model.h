// A loaded Llama-family model: spec, global tensors, and decoder layers materialised in fp32
// on demand (all resident for small models; one at a time when the model is large).
#pragma once
#include <functional>
#include <memory>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include "core/arch.h"
#include "core/tensor.h"
#include "io/tokenizer.h"
#include "core/spec.h"
#include "model/site.h"

namespace kt {
struct PackedWeight;
struct RowTransform;
}

namespace kt {

// A linear layer y = x W^T + b, W is [out, in].
struct Linear {
  Tensor w;
  Tensor b;  // empty: no bias
  // Set by the weight quantizers (symmetric specs): w = q * qscale exactly, qscale [out, groups].
  Tensor qscale;
  int qbits = 0;
  // Real low-bit execution (runtime/): packed integer weights and the per-token activation
  // quantizer applied to the input; when set, linear_forward runs the integer GEMM.
  std::shared_ptr<const PackedWeight> packed;
  int act_bits = 0;
  float act_clip = 1.0f;
  // Optional online transform applied to each input row as it is quantized (fused: the
  // transformed row stays in a per-thread buffer); e.g. R4 before down_proj.
  std::shared_ptr<const RowTransform> act_pre;
  // Packed weights used without an activation quantizer (e.g. `kurtail generate` on a --packed
  // model) run in fp32: dequantized once, on first use, and kept here.
  mutable std::shared_ptr<const Tensor> dequantized;
  // Instead of that cache: dequantized for each call and dropped. Set while quantization holds a linear packed
  // that the layer still runs (GPTQ's later sites: gptq_layer), so only one linear at a time
  // exists in fp32.
  bool dequantize_per_call = false;
  int64_t out() const { return w.dim(0); }
  int64_t in() const { return w.dim(1); }
};

// Which tensor of a linear a for_each_tensor visit is (norms are always Weight).
enum class TensorRole : uint8_t { Weight, Bias };

// A linear of a layer: its table field and, for an expert's linear, the expert (0..n_experts-1;
// n_experts: the shared expert; -1: not an expert's).
struct LinearId {
  Field field;
  int expert = -1;
};

// One expert of a mixture-of-experts MLP: down(act(gate x) * up x).
struct ExpertWeights {
  Linear gate, up, down;
};

// The decoder layer. Code outside the forward pass reaches its tensors only through
// for_each_linear, for_each_tensor and site_consumers (below), with names and shapes from the
// architecture's table (core/arch.h), so a new field is added in one place.
struct LayerWeights {
  Tensor attn_norm;  // [hidden]; after norm folding: all ones
  Linear q, k, v, o;
  Tensor mlp_norm;   // [hidden]
  Linear gate, up, down;  // the dense MLP (empty in an MoE layer)
  Tensor q_norm, k_norm;  // [head_dim] per-head RMSNorm of q and k before RoPE (Qwen3); empty: none
  // Mixture of experts (ModelSpec::moe()): the router [n_experts, hidden], the experts, and
  // Qwen2-MoE's shared expert with its sigmoid gate [1, hidden] (empty when the family has none).
  Linear router;
  std::vector<ExpertWeights> experts;
  ExpertWeights shared;
  Linear shared_router;
  // [hidden] RMSNorm of the o_proj / down_proj output before its residual add (Gemma 2); empty: none
  Tensor post_attn_norm, post_mlp_norm;
  // With post-norms and R1: o_proj/down_proj stay unrotated on their output, the post-norms run
  // in the original basis and this (R1) rotates their output into the residual stream's basis
  // before the add (rotate_residual_layer sets it; docs/DESIGN.md). Null: none.
  std::shared_ptr<const RowTransform> post_norm_r1;
  bool has_post_norms() const { return !post_attn_norm.empty(); }

  bool has_shared_expert() const { return !shared.down.w.shape.empty(); }
  // The member behind a table field (expert: which expert, for ExpGate/ExpUp/ExpDown); fails for
  // a norm field in linear() and vice versa.
  Linear& linear(Field f, int expert = -1);
  const Linear& linear(Field f, int expert = -1) const;
  Linear& linear(LinearId id) { return linear(id.field, id.expert); }
  const Linear& linear(LinearId id) const { return linear(id.field, id.expert); }
  Tensor& norm(Field f);
  const Tensor& norm(Field f) const;

  // Each weight-quantized linear once: q, k, v, o, then gate, up, down (dense) or every expert's
  // gate, up, down and the shared expert's: f(LinearId, Linear&). The routing linears (router,
  // shared-expert gate) stay in full precision and are not visited; site_consumers lists them.
  template <class F>
  void for_each_linear(F&& f) {
    visit_linears(*this, f);
  }
  template <class F>
  void for_each_linear(F&& f) const {
    visit_linears(*this, f);
  }
  // Every tensor the spec gives the layer, in the table's (checkpoint) order, the rows of all
  // experts expert-major: each norm, each linear's weight and, where the spec says so, its bias:
  // f(const TensorRow&, int expert, TensorRole, Tensor&) (expert -1 for a row not per expert).
  // A packed linear's weight is visited too (its shape only; Linear::packed holds the data).
  // The non-const visit sizes `experts` to the spec first (loading fills a fresh layer).
  template <class F>
  void for_each_tensor(const ModelSpec& s, F&& f) {
    if (s.moe()) experts.resize((size_t)s.n_experts);
    visit_tensors(*this, s, f);
  }
  template <class F>
  void for_each_tensor(const ModelSpec& s, F&& f) const {
    visit_tensors(*this, s, f);
  }

 private:
  template <class LW, class F>
  static void visit_linears(LW& w, F& f) {
    for (Field id : {Field::Q, Field::K, Field::V, Field::O}) f(LinearId{id}, w.linear(id));
    if (w.experts.empty()) {
      for (Field id : {Field::Gate, Field::Up, Field::Down}) f(LinearId{id}, w.linear(id));
      return;
    }
    for (int e = 0; e < (int)w.experts.size(); e++)
      for (Field id : {Field::ExpGate, Field::ExpUp, Field::ExpDown}) f(LinearId{id, e}, w.linear(id, e));
    if (w.has_shared_expert())
      for (Field id : {Field::ShGate, Field::ShUp, Field::ShDown}) f(LinearId{id, (int)w.experts.size()}, w.linear(id));
  }
  template <class LW, class F>
  static void visit_tensors(LW& w, const ModelSpec& s, F& f) {
    if (s.moe() && w.experts.size() != (size_t)s.n_experts) fail_expert_count();
    auto visit = [&](const TensorRow& r, int e) {
      if (r.is_norm()) {
        f(r, e, TensorRole::Weight, w.norm(r.field));
        return;
      }
      auto& l = w.linear(r.field, e);
      f(r, e, TensorRole::Weight, l.w);
      if (row_has_bias(r, s)) f(r, e, TensorRole::Bias, l.b);
    };
    const auto rows = arch_table(s).layer;
    for (size_t i = 0; i < rows.size();) {
      if (!rows[i].per_expert()) {
        visit(rows[i++], -1);
        continue;
      }
      size_t j = i;  // the run of per-expert rows [i, j): visited expert by expert
      while (j < rows.size() && rows[j].per_expert()) j++;
      for (int e = 0; e < s.n_experts; e++)
        for (size_t k = i; k < j; k++) visit(rows[k], e);
      i = j;
    }
  }
  [[noreturn]] static void fail_expert_count();
};

// One activation site of a layer and what reads it: the RMSNorm weight that scales it (null
// for OIn and DownIn, which no norm feeds) and the linears whose input it is. This is the Llama
// graph (model/forward.cc); norm folding, rotation fusion, smoothing, GPTQ grouping and
// diagnostics iterate it instead of naming q/k/v/gate/up. An MoE layer lists the router, the
// shared-expert gate and every expert's gate/up as consumers of MlpIn (each tagged with its
// expert: GPTQ gives each expert the Hessian of the tokens routed to it), and gives each
// expert's down_proj its own DownIn group.
template <bool Const>
struct SiteGroup {
  using TensorT = std::conditional_t<Const, const Tensor, Tensor>;
  using LinearT = std::conditional_t<Const, const Linear, Linear>;
  struct Consumer {
    Field field;
    LinearT* lin;
    int expert = -1;       // which expert's linear (LinearId::expert)
    bool routing = false;  // router / shared-expert gate: full-precision weights, not quantized
  };
  Site site;
  TensorT* norm;      // null: no norm feeds the site
  Field norm_field;   // the table field of `norm` (meaningful only when norm is set)
  std::vector<Consumer> linears;
  // The linears' outputs are added to the residual stream (o_proj, down_proj); the normed sites'
  // linears read it. R1 rotates the readers' inputs and the writers' outputs.
  bool writes_residual;
  int expert = -1;  // a DownIn group of one expert's down_proj (MoE); -1 otherwise
  std::vector<LinearT*> lins() const {
    std::vector<LinearT*> v;
    for (const Consumer& c : linears) v.push_back(c.lin);
    return v;
  }
};
using SiteConsumers = SiteGroup<false>;
// In forward order: AttnIn {attn_norm; q, k, v}, OIn {o}, MlpIn {mlp_norm; gate, up}, DownIn {down};
// MoE: MlpIn {mlp_norm; router, shared gate, each expert's gate/up, the shared expert's}, then one
// DownIn per expert (the shared expert last).
std::vector<SiteGroup<false>> site_consumers(LayerWeights& w);
std::vector<SiteGroup<true>> site_consumers(const LayerWeights& w);

// The rows of the embedding and head transforms are applied to at a time (Model::transform_embed_rows).
inline constexpr int64_t kGlobalRowBlock = 256;

// Model::open(path, -1) keeps a model resident up to this size in fp32, and streams a larger one.
inline constexpr size_t kResidentFp32Bytes = size_t(8) << 30;

class Model {
 public:
  // Opens an HF checkpoint directory or a llama2.c .bin (with tokenizer.bin / tok*.bin beside it,
  // or `tokenizer_path`). `resident`: -1 decide by size (fp32 <= 8 GiB), 0 stream, 1 keep all.
  // `defer_globals`: see globals_deferred().
  static std::unique_ptr<Model> open(const std::string& path, int resident = -1, const std::string& tokenizer_path = "",
                                     bool defer_globals = false);
  // A model over an arbitrary tensor source (tests, generated models). No tokenizer.
  static std::unique_ptr<Model> from_source(ModelSpec spec, std::shared_ptr<TensorSource> src, bool resident = true,
                                            bool defer_globals = false);

  ModelSpec spec;
  std::string path;
  Tensor embed;       // [vocab, hidden]
  Tensor final_norm;  // [hidden]
  // [vocab, hidden]; no weights (w and packed both empty) when tied to embed. A linear like the
  // layers': quantized with its own scales (Recipe::quant_lm_head), packed for the kernels.
  Linear lm_head;
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_path;  // HF directory or llama2.c tokenizer file the tokenizer came from

  bool tied() const { return deferred_ ? !(head_stored_ || head_untied_) : lm_head.w.empty() && !lm_head.packed; }
  // The head's fp32 weights: lm_head's, or the embedding when tied (empty for a head stored
  // packed only; final_logits runs that one through linear_forward).
  const Tensor& head() const { return tied() ? embed : lm_head.w; }
  // The weights of layer i; loaded from the source if not in memory. In streaming mode
  // other unpinned layers are dropped first, so at most one source layer is in memory.
  std::shared_ptr<const LayerWeights> layer(int i) const;
  // Replaces layer i (after a transform or quantization); pinned in memory from then on.
  void set_layer(int i, LayerWeights w);
  // Loads a fresh copy of layer i from the source (ignoring replacements; the load transforms
  // applied).
  LayerWeights load_layer(int i) const;
  // A copy of layer i to transform and hand back (set_layer) or pass on. In streaming mode the
  // model keeps no copy of an unpinned layer, so one layer is in memory, not two.
  LayerWeights take_layer(int i) const;
  // Forgets layer i's replacement (a quantized layer already written out): reloaded from the source
  // if asked for again.
  void release_layer(int i);
  // A change every layer gets as it loads (RoPE convention): applied now to the layers held in
  // memory for good, and at load to the others, so a streamed model is never materialised whole.
  void add_load_transform(std::function<void(LayerWeights&)> f);
  bool resident() const { return resident_; }
  // Keeps every layer in memory from now on (true: loads the missing ones), or streams them.
  void set_resident(bool r);
  // The checkpoint's tensors in fp32 (what a resident model holds).
  size_t fp32_bytes() const;
  // Keeps only the first n decoder layers (experiments: e.g. timing 4 vs 8 layers).
  void truncate_layers(int n);
  // Materialises the tied lm_head as its own tensor (needed before R1 or norm folding).
  void untie_lm_head();

  // Deferred globals (opened with defer_globals, for a streamed quantization): `embed` and
  // `lm_head` stay empty and in the checkpoint, which is read a block of rows at a time
  // (embed_rows, head_rows) with the row transforms recorded so far applied as the rows are read;
  // so the embedding and head of a 128k vocabulary (2 GiB each in fp32) are never held whole. Only
  // a plain stored form is deferred (no quantized or packed head, no GGUF row permutation);
  // otherwise they load as usual and globals_deferred() is false.
  bool globals_deferred() const { return deferred_; }
  // Materialises deferred globals (with their transforms) for code that needs them whole.
  void load_globals();
  // fp32 rows [row0, row0 + n) of the embedding / the untied head as the model holds them (n x hidden).
  void embed_rows(int64_t row0, int64_t n, float* dst) const;
  void head_rows(int64_t row0, int64_t n, float* dst) const;
  // The embedding rows of `n` token ids (in range), read as embed_rows would (deferred: the
  // distinct rows read and transformed together).
  void embed_rows_of(const int32_t* ids, int64_t n, float* dst) const;
  // A change of every row of the embedding / the untied head (R1, the final norm folded in):
  // applied now to held globals, at each read to deferred ones. f(rows, n) gets whole blocks of
  // kGlobalRowBlock rows from a multiple of it (the last block shorter), held or deferred, so a
  // row gets the same bits either way even where f's arithmetic depends on the row's place in
  // the block (a BLAS product).
  using GlobalRowsFn = std::function<void(float* rows, int64_t n)>;
  void transform_embed_rows(const GlobalRowsFn& f);
  void transform_head_rows(const GlobalRowsFn& f);
  // The online R1 of a rotated post-norm model (LayerWeights::post_norm_r1), set on every
  // layer, loaded now or later (a quantized directory: open_model rebuilds it from the recipe).
  void set_post_norm_r1(std::shared_ptr<const RowTransform> r1);
  // Whether layer i runs an online post-norm R1, without loading a layer that is not in memory
  // (a streamed model's layer is hundreds of MiB).
  bool has_post_norm_r1(int i) const;

 private:
  std::shared_ptr<TensorSource> src_;
  bool resident_ = true;
  mutable std::vector<std::shared_ptr<LayerWeights>> layers_;
  std::vector<bool> pinned_;
  std::shared_ptr<const RowTransform> post_norm_r1_;
  std::vector<std::function<void(LayerWeights&)>> load_transforms_;
  // deferred globals: the head is stored (else read from the embedding once untied)
  bool deferred_ = false, head_stored_ = false, head_untied_ = false;
  std::string embed_name_, head_name_;
  std::vector<GlobalRowsFn> embed_fns_, head_fns_;
  void init_globals(bool defer);
  bool can_defer_globals() const;
  void read_rows(const std::string& name, int64_t row0, int64_t n, float* dst) const;
  void read_transformed(const std::string& name, const std::vector<GlobalRowsFn>& fns, int64_t row0, int64_t n,
                        float* dst) const;
};

}  // namespace kt
