// Vectorised exponentials for the forward pass: the softmax of attention scores and the SiLU
// gate. kurtail's own exp (a Cody-Waite reduction and a degree-7 polynomial, within a few ulp of
// the libm one) so that the AVX-512 path and the portable one give the same bits: the same
// operations, the same rounding, in the same order (tests/vmath_test.cc holds them to it).
#pragma once

#include <cstdint>

namespace kt {

// exp(x) as the vector path computes it; inputs are clamped to [-87.3, 88] (the result stays a
// normal float: exp(-87.3) ~ 1.2e-38 stands for anything smaller), NaN stays NaN.
float exp_ref(float x);

// Softmax in place over x[lo..hi] (inclusive; the rest of x is left alone): the maximum
// (NaN scores ignored, as std::max does), e = exp(x - max) summed in double over 16 lanes
// (element lo + j into lane j % 16, lanes added 0..15 at the end), then e * (1 / sum).
void softmax_range(float* x, int lo, int hi);

// g[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u over n values (SwiGLU).
void silu_mul(float* g, const float* u, int64_t n);

// Gemma 2's soft cap, x[i] = cap * tanh(x[i] / cap) over n values (libm's tanh), applied to
// attention scores before the softmax and to the final logits. Threads only above 64k values.
void softcap(float* x, int64_t n, float cap);

// The portable forms of the two (what runs without AVX-512), for the tests.
void softmax_range_ref(float* x, int lo, int hi);
void silu_mul_ref(float* g, const float* u, int64_t n);

}  // namespace kt
