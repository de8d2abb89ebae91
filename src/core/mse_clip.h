// The weights' MSE clip search (QuaRot's / GPTQ's w_clip): for the ratios 1 - i/grid,
// i < maxshrink * grid, quantize the values with the range shrunk by the ratio and keep the
// ratio with the least sum |q(x) - x|^norm (the first one on ties). At 7B shapes this search
// was 85 % of QuaRot-RTN's quantization time (80 ratios x every weight x powf), so it runs
// vectorized: 16 values at a time through one source compiled for AVX-512, AVX2 and plain
// x86-64, with the same operations in the same order (no FMA contraction: the file is built
// with -ffp-contract=off), so every instruction set chooses the same bits.
//   - levels as quantize_level: round half to even of x / scale, + zero, NaN -> zero, clamp;
//   - |d|^norm as exp2(norm * log2 |d|) with float polynomials (relative error ~1e-6; terms
//     below 2^-126 count as 0);
//   - the sum in double, in 16 lanes added as a fixed tree; a ratio stops early once its
//     partial sum reaches the best one (partial sums of non-negative terms never exceed the
//     total, so stopping never changes the choice).
#pragma once
#include <cstdint>

#include "core/quantizer.h"

namespace kt {

enum class SimdLevel { Portable, Avx2, Avx512 };
// The widest level this CPU runs.
SimdLevel best_simd_level();

// The search over x[0..n) whose minimum and maximum are lo and hi; s.mse_* set the grid.
QParams mse_clip_search(const float* x, int64_t n, const QuantSpec& s, float lo, float hi);
// The same at a given level; *err gets the chosen ratio's error sum (tests: every level gives
// the same bits, of the choice and of the sum).
QParams mse_clip_search(const float* x, int64_t n, const QuantSpec& s, float lo, float hi, SimdLevel level,
                        double* err = nullptr);

}  // namespace kt
