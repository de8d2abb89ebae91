// The K/V cache and the view of it that attention reads.
#pragma once
#include <cstdint>
#include <vector>

#include "core/quantizer.h"
#include "core/spec.h"
#include "util/row_transform.h"

namespace kt {

// What one layer's attention reads: sequence b's key at position j starts at
// k + (b * seq_stride + j) * kv_dim (likewise v). Attention does not know whether the values
// come from the current chunk, an fp32 cache or a dequantized integer cache.
struct KVView {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t seq_stride = 0;  // rows between sequences
};

// Buffers a quantized cache dequantizes into for one view (reused across layers by the caller).
struct KVScratch {
  std::vector<float> k, v;
};

// K/V cache for `nseq` sequences of up to `max_len` positions, per layer. fp32, or (when
// k_spec/v_spec are quantizers of 2..8 bits with group = head_dim) packed integer codes: one
// byte per value for 5..8 bits, two 4-bit codes per byte otherwise (value 2i in the low nibble
// of byte i, 2i+1 in the high one), with an fp32 scale and zero point per token per head.
// Values are quantized when written, dequantized when attention reads.
//
// The quantized buffers are head-major, [sequence][kv head][position]: decode attention walks
// one head's positions in order, so its rows are consecutive in memory and the hardware
// prefetcher streams them (position-major rows put one head's codes a whole row apart, a cache
// miss and soon a new page per position). The fp32 buffers stay position-major, the layout
// attend() reads in place.
//
// How decode attention (attend_cache) multiplies a query with 4-bit K codes. F32: the float
// query times the codes, the scores attend() computes over the dequantized view up to summation
// order. Q8: the query quantized to int8 per 32 dims (scale max |q| / 127, as llama.cpp's q8_0
// quantizes the activations of its quantized-K dot products) and integer dot products on the
// codes (vpdpbusd): about a third of the K work, each score off by the query's rounding. Only
// the AVX-512 VNNI copy (4-bit K and V, heads of 128 or 256 dims: the word-order path) has it;
// every other case runs F32.
enum class KDot { F32, Q8 };

struct KVCache {
  int nseq = 0, max_len = 0, kv_dim = 0, head_dim = 0, n_kv = 0, len = 0;  // len: positions filled
  KDot k_dot = KDot::F32;
  std::vector<std::vector<float>> k, v;  // fp32 mode: [layer][nseq * max_len * kv_dim]
  QuantSpec k_spec, v_spec;              // quantized mode when enabled()
  std::vector<std::vector<uint8_t>> kq, vq;  // [layer][(nseq * n_kv * max_len) * head_bytes]
  std::vector<std::vector<float>> kscale, kzero, vscale, vzero;  // [layer][nseq * n_kv * max_len]
  KVCache(const ModelSpec& s, int nseq, int max_len);
  KVCache(const ModelSpec& s, int nseq, int max_len, const QuantSpec& k_spec, const QuantSpec& v_spec);
  bool quantized() const { return k_spec.enabled(); }
  // Bytes of one head's codes at one position in kq (is_v false) or vq: head_dim for 5..8
  // bits, half of it (rounded up) for 2..4.
  int head_bytes(bool is_v) const;
  // Index of (sequence b, kv head h, position j) in the scale/zero buffers; times head_bytes,
  // the offset of its codes.
  size_t slot(int b, int h, int j) const { return ((size_t)b * n_kv + h) * max_len + j; }
  size_t bytes() const;  // storage actually held
  // Writes rows [t0, t0+n) of sequence b in layer l from src [n, kv_dim]; reads rows [0, n) back.
  // head_pre (quantized mode only) transforms each head's head_dim values in a buffer before
  // they are quantized; src is not modified.
  void write(int layer, bool is_v, int b, int t0, int n, const float* src, const RowTransform* head_pre = nullptr);
  void read(int layer, bool is_v, int b, int n, float* dst) const;
  // Appends positions [pos0, pos0+ntok) of the first nseq sequences to layer l from k, v
  // [nseq*ntok, kv_dim] (k_pre: the deferred per-head K transform, quantized cache only).
  void append(int layer, int nseq, int pos0, int ntok, const float* k, const float* v, const RowTransform* k_pre);
  // Positions [0, len) of layer l for the first nseq sequences: the fp32 storage itself, or
  // (quantized) the codes dequantized into `scratch`.
  KVView view(int layer, int nseq, int len, KVScratch* scratch) const;
  // Copies sequence 0's positions [0, n) of every layer to sequences 1..nseq-1 (a shared
  // context scored against several continuations).
  void broadcast_first_sequence(int n);
};

}  // namespace kt
