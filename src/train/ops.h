// The decoder's operations as forward/backward pairs, side by side (llm.c's train_gpt2.c):
// each backward takes what its forward kept and the gradient of the forward's output, and
// returns the gradients of its inputs. Templated on the scalar so the tests can check every
// backward against finite differences in float64; training runs them in float.
// Activations are row-major [rows, cols], rows = nseq * ntok, sequence-major.
// Gradients marked "+=" are accumulated into (so an input read by several ops sums them).
#pragma once
#include <cstdint>
#include <vector>

#include "core/quantizer.h"
#include "core/spec.h"

namespace kt::train {

// C = alpha op(A) op(B) + beta C (row-major): OpenBLAS sgemm (kurtail's deterministic tiling)
// for float, cblas_dgemm for double.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc);

// RMSNorm without a weight (the model's norms are folded into the next linears first):
// y = x / rms(x), inv[r] = 1 / rms(x_r).
template <class T>
void rmsnorm_forward(const T* x, T* y, T* inv, int64_t rows, int64_t d, double eps);
// dx += inv * (dy - y * mean(dy * y)) per row.
template <class T>
void rmsnorm_backward(const T* dy, const T* y, const T* inv, T* dx, int64_t rows, int64_t d);

// y = x W^T + b; W [out, in], b [out] or null.
template <class T>
void linear_forward(const T* x, const T* W, const T* b, T* y, int64_t rows, int64_t in, int64_t out);
// dx += dy W, dW = dy^T x (overwritten), db = sum of dy's rows (overwritten); null: not wanted.
template <class T>
void linear_backward(const T* dy, const T* x, const T* W, T* dx, T* dW, T* db, int64_t rows, int64_t in,
                     int64_t out);

// RoPE as model/rope.cc computes it (the frequencies and attention factor of rope_freqs, the
// angle in fp32 as HF does), tabulated for positions 0..ntok-1.
template <class T>
struct RopeTable {
  int half = 0;
  bool rotate_half = true;   // HF's rotate_half; false: interleaved pairs (llama2.c)
  std::vector<T> cos, sin;   // [ntok, half], times the attention factor
};
template <class T>
RopeTable<T> rope_table(const ModelSpec& s, int ntok);
// In place on x [nseq*ntok, nheads*head_dim]; the backward applies the transpose.
template <class T>
void rope_forward(const RopeTable<T>& t, T* x, int nseq, int ntok, int nheads);
template <class T>
void rope_backward(const RopeTable<T>& t, T* dx, int nseq, int ntok, int nheads);

// Causal attention with GQA (query head h reads kv head h / (n_heads / n_kv)) over each
// sequence, window > 0 as in model/forward.cc's attend: out = softmax(scale q k^T) v.
// P [nseq, n_heads, ntok, ntok] keeps the probabilities for the backward.
struct AttnShape {
  int nseq, ntok, n_heads, n_kv, head_dim, window;
  float scale;
};
template <class T>
void attention_forward(const AttnShape& a, const T* q, const T* k, const T* v, T* out, T* P);
// dq, dk, dv are overwritten.
template <class T>
void attention_backward(const AttnShape& a, const T* dout, const T* q, const T* k, const T* v, const T* P, T* dq,
                        T* dk, T* dv);

// SwiGLU: h = silu(g) * u over n values; dg, du overwritten.
template <class T>
void swiglu_forward(const T* g, const T* u, T* h, int64_t n);
template <class T>
void swiglu_backward(const T* dh, const T* g, const T* u, T* dg, T* du, int64_t n);

// Next-token cross-entropy of logits [rows, vocab] against targets (a target < 0 is not
// scored). Returns the summed loss; with `grad`, logits are replaced by dLoss/dlogits * gscale
// (gscale = 1 / the number of scored tokens gives the mean's gradient).
template <class T>
double cross_entropy(T* logits, const int32_t* targets, int64_t rows, int64_t vocab, bool grad, double gscale);

// Fake quantization with the straight-through estimator: the forward rounds (core's
// fake_quant_ref, exactly what the quantized model computes), the backward passes the
// gradient unchanged (SpinQuant's STEQuantize: scales detached, no clamp mask).
template <class T>
void fake_quant_ste_forward(T* x, int64_t rows, int64_t cols, const QuantSpec& q);

}  // namespace kt::train
