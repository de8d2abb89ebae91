// The Llama forward pass as plain calls over a batch of token sequences:
//   x = embed(tokens); for each layer: x = decoder_layer(x); logits = lm_head(norm(x))
// Hook points let later stages (fake quantization, online Hadamards, calibration capture,
// diagnostics) see and modify every quantizable activation without copying this code.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <vector>

#include "model/kv_cache.h"
#include "model/rope.h"
#include "model/model.h"
#include "model/site.h"
#include "core/quantizer.h"
#include "util/row_transform.h"

namespace kt {

class Hooks {
 public:
  virtual ~Hooks() = default;
  // x is row-major [rows, cols] and may be modified in place.
  virtual void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) = 0;
  // A per-head transform of K (size head_dim) that on_activation(Site::K) did not apply, left
  // to a quantized K/V cache to apply as it quantizes (fused); decoder_layer applies it itself
  // when there is no quantized cache. Null: nothing deferred.
  virtual const RowTransform* k_head_transform() const { return nullptr; }
  // Mixture of experts: the rows expert e's linears read at `site` (MlpIn: the tokens routed to
  // it, gathered after on_activation(MlpIn) changed them; DownIn: its down_proj input after
  // on_activation(DownIn), which sees each expert's rows separately). e == n_experts is the shared
  // expert. Read-only; for per-expert statistics (GPTQ Hessians, diagnostics).
  virtual void on_expert_input(int /*layer*/, int /*expert*/, Site /*site*/, const float* /*x*/, int64_t /*rows*/,
                               int64_t /*cols*/) {}
  // True when this pass needs nothing after on_activation(site): decoder_layer then returns right
  // there (at attn_in, o_in, and a dense MLP's mlp_in and down_in), leaving x half-updated. Only
  // for statistics passes whose output is discarded (GPTQ's Hessian captures).
  virtual bool pass_ends_at(Site /*site*/) const { return false; }
};

// Embedding lookup: tokens[n] -> x[n, hidden]. Token ids are checked against the vocab.
void embed_tokens(const Model& m, const int32_t* tokens, int64_t n, float* x);

// One decoder layer over x [nseq*ntok, hidden] (sequence-major), positions pos0..pos0+ntok-1:
// x += attention(norm(x)); x += mlp(norm(x)). With a cache, K/V are appended at pos0 and
// attention covers positions 0..pos0+ntok-1; without, attention covers only this chunk (pos0
// must then be 0). Fails naming the layer if its output is not finite.
void decoder_layer(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nseq, int ntok, int pos0,
                   KVCache* cache, Hooks* hooks);
// The two blocks of decoder_layer, each adding its output to the residual x (mlp's update
// fails naming the layer if the result is not finite).
// attention and mlp return true when the hooks ended the pass inside them (Hooks::pass_ends_at).
bool attention(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nseq, int ntok, int pos0,
               KVCache* cache, Hooks* hooks);
bool mlp(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int64_t rows, Hooks* hooks);
// The mixture-of-experts MLP (model/moe.cc) on the normed input h [rows, hidden]: routing, the
// routed experts and the shared expert; writes the block's output y [rows, hidden]. It calls the
// MlpIn hook on h itself, after routing (the router reads h in full precision).
void moe_mlp(const ModelSpec& s, const LayerWeights& w, int layer, float* h, int64_t rows, Hooks* hooks, float* y);
// act(g) * u in place in g (SwiGLU, or GeGLU with the tanh GELU for Gemma), n values.
void gated_activation(const ModelSpec& s, float* g, const float* u, int64_t n);
// Causal softmax(q k^T / sqrt(head_dim)) v for every head (GQA: query head h reads kv head
// h / (n_heads / n_kv_heads)): q [nseq*ntok, q_dim] at absolute positions qpos0.., keys 0..L-1
// from kv; out [nseq*ntok, q_dim]. window > 0: query i sees only keys i-window < j <= i.
void attend(const ModelSpec& s, const float* q, const KVView& kv, int nseq, int ntok, int qpos0, int L, int window,
            float* out);

// Runs layer `layer` over activations x [nwin*ctx, hidden] of nwin independent windows (no
// cache), `chunk` windows at a time so attention's scratch stays bounded. hooks_for(b0) gives
// the hooks of the chunk that starts at window b0. keep_output false: x is left unchanged
// (the layer runs on a copy: a statistics-only pass).
// Windows per chunk of a calibration pass: at most 8, fewer when a chunk's MLP scratch would
// pass kLayerChunkScratch bytes (the gate, up and down inputs, rows x width floats each: at a
// 7B shape 8 windows of 512 were 1 GiB, at one window 129 MiB), and at least one.
constexpr int64_t kLayerChunkScratch = int64_t(64) << 20;
int layer_chunk_windows(const ModelSpec& s, int ctx);

void for_each_layer_chunk(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nwin, int ctx, int chunk,
                          const std::function<Hooks*(int b0)>& hooks_for, bool keep_output = true);

// Final norm + lm_head: x [rows, hidden] (overwritten with the normed values) -> logits [rows, vocab].
void final_logits(const Model& m, float* x, int64_t rows, float* logits, Hooks* hooks);

// Which positions forward() computes logits for. A prompt before generation needs only its last
// position's: the head is vocab x hidden per row, which at a 7B shape is a third of a 2-layer
// prefill's multiply-adds when done for all 512 rows (llama.cpp's llama_batch_get_one does the same).
enum class LogitRows { All, Last };

// Whole model on nseq sequences of ntok tokens (prefill or one decode step when cache != null).
// Returns logits [nseq*ntok, vocab] (All) or [nseq, vocab] of each sequence's last token (Last).
std::vector<float> forward(const Model& m, const int32_t* tokens, int nseq, int ntok, KVCache* cache, Hooks* hooks,
                           LogitRows which = LogitRows::All);

// Building blocks, exposed for transforms and tests.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, double eps);
void linear_forward(const float* x, int64_t rows, const Linear& l, float* y);
// Linears reading the same input x, each into its own output (q/k/v, gate/up): the same result
// as linear_forward on each, with the input quantized once when their quantizers agree.
struct LinearOut {
  const Linear* l;
  float* y;
};
void linears_forward(const float* x, int64_t rows, std::initializer_list<LinearOut> outs);
// y[M,N] = x[M,K] * W[N,K]^T through OpenBLAS.
void sgemm_nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K);

}  // namespace kt
