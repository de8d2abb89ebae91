// SmoothQuant-style channel scaling: s_j = max|X_j|^alpha / max|W_j|^(1-alpha), X <- X/s, W <- W s.
#pragma once
#include <vector>

#include "model/model.h"

namespace kt {

// max|W_j| is taken over column j of every consuming linear. Channels that never fire get s = 1;
// scales are clamped to [1e-5, 1e5].
std::vector<float> smooth_scales(const std::vector<double>& act_absmax, const std::vector<const Linear*>& ws,
                                 double alpha);
// Folds 1/s into a preceding RMSNorm weight and s into the consuming linears' columns.
void smooth_into_norm(Tensor& norm_w, const std::vector<Linear*>& ws, const std::vector<float>& s);
// down_proj input smoothing through up_proj: up rows (and bias) / s, down columns * s.
// Exact because silu(g) * (u / s) = (silu(g) * u) / s.
void smooth_down_via_up(LayerWeights& w, const std::vector<float>& s);

}  // namespace kt
