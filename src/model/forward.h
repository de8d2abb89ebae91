// The Llama forward pass as plain calls over a batch of token sequences:
//   x = embed(tokens); for each layer: x = decoder_layer(x); logits = lm_head(norm(x))
// Hook points let later stages (fake quantization, online Hadamards, calibration capture,
// diagnostics) see and modify every quantizable activation without copying this code.
#pragma once
#include <cstdint>
#include <vector>

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
};

// K/V cache for `nseq` sequences of up to `max_len` positions, per layer. fp32, or (when
// k_spec/v_spec are quantizers of 2..8 bits with group = head_dim) packed integer codes: one
// byte per value for 5..8 bits, two 4-bit codes per byte otherwise, with an fp32 scale and zero
// point per token per head. Values are quantized when written, dequantized when attention reads.
struct KVCache {
  int nseq = 0, max_len = 0, kv_dim = 0, head_dim = 0, len = 0;  // len: positions filled
  std::vector<std::vector<float>> k, v;  // fp32 mode: [layer][nseq * max_len * kv_dim]
  QuantSpec k_spec, v_spec;              // quantized mode when enabled()
  std::vector<std::vector<uint8_t>> kq, vq;            // [layer][nseq * max_len * bytes_per_row]
  std::vector<std::vector<float>> kscale, kzero, vscale, vzero;  // [layer][nseq * max_len * n_kv]
  KVCache(const ModelSpec& s, int nseq, int max_len);
  KVCache(const ModelSpec& s, int nseq, int max_len, const QuantSpec& k_spec, const QuantSpec& v_spec);
  bool quantized() const { return k_spec.enabled(); }
  size_t bytes() const;  // storage actually held
  // Writes rows [t0, t0+n) of sequence b in layer l from src [n, kv_dim]; reads rows [0, n) back.
  // head_pre (quantized mode only) transforms each head's head_dim values in a buffer before
  // they are quantized; src is not modified.
  void write(int layer, bool is_v, int b, int t0, int n, const float* src, const RowTransform* head_pre = nullptr);
  void read(int layer, bool is_v, int b, int n, float* dst) const;
};

// Embedding lookup: tokens[n] -> x[n, hidden]. Token ids are checked against the vocab.
void embed_tokens(const Model& m, const int32_t* tokens, int64_t n, float* x);

// One decoder layer over x [nseq*ntok, hidden] (sequence-major), positions pos0..pos0+ntok-1.
// With a cache, K/V are appended at pos0 and attention covers positions 0..pos0+ntok-1;
// without, attention covers only this chunk (pos0 must then be 0).
void decoder_layer(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nseq, int ntok, int pos0,
                   KVCache* cache, Hooks* hooks);

// Final norm + lm_head: x [rows, hidden] (overwritten with the normed values) -> logits [rows, vocab].
void final_logits(const Model& m, float* x, int64_t rows, float* logits, Hooks* hooks);

// Whole model on nseq sequences of ntok tokens (prefill or one decode step when cache != null).
// Returns logits [nseq*ntok, vocab].
std::vector<float> forward(const Model& m, const int32_t* tokens, int nseq, int ntok, KVCache* cache, Hooks* hooks);

// Building blocks, exposed for transforms and tests.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, double eps);
void linear_forward(const float* x, int64_t rows, const Linear& l, float* y);
// y[M,N] = x[M,K] * W[N,K]^T through OpenBLAS.
void sgemm_nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K);
void apply_rope(const ModelSpec& s, float* x, int64_t ntok, int nheads, int pos0, int nseq);

}  // namespace kt
