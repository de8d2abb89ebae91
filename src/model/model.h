// A loaded Llama-family model: spec, global tensors, and decoder layers materialised in fp32
// on demand (all resident for small models; one at a time when the model is large).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/tokenizer.h"
#include "core/spec.h"

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
  int64_t out() const { return w.dim(0); }
  int64_t in() const { return w.dim(1); }
};

struct LayerWeights {
  Tensor attn_norm;  // [hidden]; after norm folding: all ones
  Linear q, k, v, o;
  Tensor mlp_norm;   // [hidden]
  Linear gate, up, down;
};

class Model {
 public:
  // Opens an HF checkpoint directory or a llama2.c .bin (with tokenizer.bin / tok*.bin beside it,
  // or `tokenizer_path`). `resident`: -1 decide by size (fp32 <= 8 GiB), 0 stream, 1 keep all.
  static std::unique_ptr<Model> open(const std::string& path, int resident = -1, const std::string& tokenizer_path = "");
  // A model over an arbitrary tensor source (tests, generated models). No tokenizer.
  static std::unique_ptr<Model> from_source(ModelSpec spec, std::shared_ptr<TensorSource> src, bool resident = true);

  ModelSpec spec;
  std::string path;
  Tensor embed;       // [vocab, hidden]
  Tensor final_norm;  // [hidden]
  Tensor lm_head;     // [vocab, hidden]; empty when tied to embed
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_path;  // HF directory or llama2.c tokenizer file the tokenizer came from

  const Tensor& head() const { return lm_head.empty() ? embed : lm_head; }
  // The weights of layer i; loaded from the source if not in memory. In streaming mode
  // other unpinned layers are dropped first, so at most one source layer is in memory.
  std::shared_ptr<const LayerWeights> layer(int i) const;
  // Replaces layer i (after a transform or quantization); pinned in memory from then on.
  void set_layer(int i, LayerWeights w);
  // Loads a fresh copy of layer i from the source (ignoring replacements).
  LayerWeights load_layer(int i) const;
  bool resident() const { return resident_; }
  // Keeps only the first n decoder layers (experiments: e.g. timing 4 vs 8 layers).
  void truncate_layers(int n);
  // Materialises the tied lm_head as its own tensor (needed before R1 or norm folding).
  void untie_lm_head();

 private:
  std::shared_ptr<TensorSource> src_;
  bool resident_ = true;
  mutable std::vector<std::shared_ptr<LayerWeights>> layers_;
  std::vector<bool> pinned_;
  void init_globals();
};

}  // namespace kt
