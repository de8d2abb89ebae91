// Outlier diagnostics per layer and activation site, measured on the activations exactly as
// the quantizers would see them (after any online rotation of the model's recipe):
//  - per-token kurtosis (mean and max over tokens)
//  - max |x| / median |x|
//  - quantization kernel: share of elements a per-token quantizer maps to 0 (CrossQuant)
//  - channel-magnitude difficulty: std of per-channel L2 norms, divided by their mean
//    (Czako et al.); the plain std is also kept.
#pragma once
#include <array>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "core/quantizer.h"

namespace kt {

// Metric building blocks (row-major X [rows, cols]); tested against hand-computed cases.
// Coefficient of variation (std / mean) and std of the per-channel L2 norms ||X[:, j]||.
void channel_magnitude_stats(const float* X, int64_t rows, int64_t cols, double* std, double* cv);
// Mean over channels of each channel's kurtosis over tokens (channels with zero variance skipped).
double mean_channel_kurtosis(const float* X, int64_t rows, int64_t cols);

struct SiteStats {
  bool seen = false;
  int64_t rows = 0, cols = 0;
  double kurt_mean = 0, kurt_max = 0;
  double chan_kurt_mean = 0;      // per-channel kurtosis over tokens, averaged over channels
  double absmax = 0, median_abs = 0, max_over_median = 0;
  double zero_share = 0;
  double chan_mag_std = 0, chan_mag_cv = 0;
  double cq_zero_share = 0;       // CrossQuant quantizer (alpha from the call), column maxima of the batch
  double w_chan_mag_cv = 0;       // weight input-column L2 norms of the representative linear
  double layer_error = 0;         // ||X W^T - Q(X) Q(W)^T||_F^2 per token, representative linear
  std::string linear;             // which linear: k_proj, o_proj, gate_proj, down_proj
  std::vector<double> chan_absmax;  // per channel, for plots
};

struct LayerDiagnostics {
  std::array<SiteStats, kNumSites> site;
  // Mixture of experts: each expert's down_proj input (the shared expert last), measured on the
  // tokens routed to it; site[DownIn] is then not measured (the experts' widths can differ).
  std::vector<SiteStats> expert_down;
};

// Runs the windows through the session (its plan's online transforms; compile it with
// OnlineCaps::quantize_activations = false for no fake quantization) and measures every site. `zero_spec` is the per-token quantizer used for
// the quantization-kernel share.
// The layer error uses RTN per-channel weights and per-token activations at zero_spec's bits.
std::vector<LayerDiagnostics> collect_diagnostics(const Session& s, const Windows& w,
                                                  const QuantSpec& zero_spec, bool progress, double cq_alpha = 0.5);

std::string diagnostics_json(const std::vector<LayerDiagnostics>& d, const std::string& label);

}  // namespace kt
