// Offline transforms that change weights but not the function the model computes
// (exactly, in full precision): RMSNorm folding and the fusable rotations R1, R2, R4.
// Conventions: W is [out, in]; "input side" W <- W Q means the layer now expects x Q;
// "output side" W <- Q^T W means the layer now produces y Q.
#pragma once
#include "model/model.h"
#include "transform/rotation.h"

namespace kt {

void rotate_input_side(Linear& l, const Rotation& q);
void rotate_output_side(Linear& l, const Rotation& q);

// RMSNorm scale alpha goes into the columns of the following linears; the norm becomes 1.
void fold_layer_norms(LayerWeights& w);
// Final norm into lm_head (unties it first, so R1 is not applied to the embedding twice).
void fold_final_norm(Model& m);

// R1 on the residual stream: embeddings and lm_head (model-level) ...
void rotate_residual_globals(Model& m, const Rotation& r1);
// The same, sharing r1 with a model whose globals are deferred (Model::globals_deferred).
void rotate_residual_globals(Model& m, std::shared_ptr<const Rotation> r1);
// ... and each layer: q/k/v/gate/up inputs, o/down outputs. Needs folded norms.
// A layer with post-norms (Gemma 2: y = RMSNorm(o) * g is added to the residual) keeps o/down
// unrotated on their output: RMSNorm commutes with R1 but the elementwise g does not, so the
// post-norm runs in the original basis and r1 rotates its output online (w.post_norm_r1).
void rotate_residual_layer(LayerWeights& w, const std::shared_ptr<const Rotation>& r1);
// R2 per head (head_dim): v_proj output and o_proj input, head by head.
void rotate_value_heads(LayerWeights& w, const ModelSpec& s, const Rotation& r2);
// R4: W_down <- W_down H, to pair with the online x <- x H at the down_proj input; r4 holds one
// rotation per down_proj input width (MoE: experts' and shared expert's), picked by size.
void fuse_down_input(LayerWeights& w, const std::vector<Rotation>& r4);

// Applies `q` to each head_dim segment of x [rows, nheads*head_dim] (online R3 on Q/K).
void rotate_heads(float* x, int64_t rows, int nheads, const Rotation& q);

// llama2.c interleaved RoPE -> HF rotate_half, by permuting the rows of W_q/W_k within each
// head (what HF's conversion script does). Exact: the attention scores do not change.
void convert_rope_to_rotate_half(Model& m);

}  // namespace kt
