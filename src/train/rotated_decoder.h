// The whole decoder as a differentiable function of SpinQuant's rotations (arXiv 2405.16406):
// R1 (hidden x hidden, on the residual stream) and one R2 per layer (head_dim x head_dim, on
// V/O), fused into the frozen weights at every evaluation exactly as quant/pipeline fuses them,
// with the recipe's activation/KV quantizers and (optionally) RTN weights in the forward and
// the straight-through estimator in the backward. The loss is the mean next-token
// cross-entropy; its gradient w.r.t. R1 and every R2 comes from the ops of train/ops.h.
//
// The backward first produces the gradient of each fused weight W' (dW' = dY^T X, as training
// the weights would), then chains it to the rotations: W' = W R1 gives dR1 += W^T dW', W' = R1^T W
// gives dR1 += W dW'^T, and likewise per head for R2. Training another parameter later (a
// learned clipping ratio, a block-wise objective) means adding its chain rule at those points.
//
// Supported: dense Llama-family decoders (Llama, Mistral, Qwen2 with its biases, llama2.c) with
// SiLU MLPs; the rest is refused by `unsupported`.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/quantizer.h"
#include "model/model.h"
#include "transform/rotation.h"

namespace kt::train {

// What the loss quantizes and rotates online: the recipe's quantizers per activation site
// (bits >= 16: none), the weights' RTN (bits >= 16: full-precision weights, SpinQuant's
// W16A4KV4 variant that GPTQ quantizes afterwards), and the fixed online Hadamards.
struct LossQuant {
  QuantSpec site[kNumSites];
  QuantSpec weight;
  bool quant_lm_head = false;              // lm_head's weight too (its input: site[LmHeadIn])
  QuantSpec head_weight;                   // ... with this quantizer (Recipe::lm_head_w)
  std::shared_ptr<const Rotation> r3;      // Q and K heads after RoPE (null: none)
  std::shared_ptr<const Rotation> r4;      // down_proj input, its inverse fused into W_down
};

// The learned parameters, row-major: r1 [hidden*hidden], r2[l] [head_dim*head_dim].
template <class T>
struct RotationParams {
  std::vector<T> r1;
  std::vector<std::vector<T>> r2;
};

// Why a model cannot be trained here ("" if it can).
std::string unsupported(const ModelSpec& s);

template <class T>
class RotatedDecoder {
 public:
  // Copies the model's weights with the norms folded, lm_head untied (the final norm folded)
  // and R4's inverse fused into W_down. Memory: one copy of the model in T.
  RotatedDecoder(const Model& m, LossQuant q);
  ~RotatedDecoder();
  RotatedDecoder(const RotatedDecoder&) = delete;
  RotatedDecoder& operator=(const RotatedDecoder&) = delete;

  const ModelSpec& spec() const { return s_; }

  // Mean next-token cross-entropy of nseq sequences of ntok tokens (position t predicts t+1
  // of its own sequence). grad non-null: dLoss/dR1 and dLoss/dR2 are added into it (sized
  // like r). Peak memory: the activations of one call (each layer's, kept for the backward).
  double loss(const RotationParams<T>& r, const int32_t* tokens, int nseq, int ntok, RotationParams<T>* grad);
  // The logits [nseq*ntok, vocab] of the rotated, quantized model (tests).
  std::vector<T> logits(const RotationParams<T>& r, const int32_t* tokens, int nseq, int ntok);

 private:
  struct Impl;
  ModelSpec s_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kt::train
