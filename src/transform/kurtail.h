// KurTail: orthogonal rotations learned to minimise the kurtosis of the activations that are
// quantized per token (arXiv 2503.01483). The paper's full text was not available; every
// inferred choice below is an option (see ../shared/reference/algorithms.md section 1):
//  - loss per row y = x R (one token's vector): kurt(y) = mean((y-mean y)^4) / var(y)^2;
//    objective mean over rows of (kurt - target)^2, target 1.8 (uniform), or plain mean kurt.
//  - R1 (hidden x hidden) is learned from all layers' q/k/v and gate/up inputs (norm folded),
//    R2 (head_dim x head_dim, per layer) from that layer's per-head V outputs.
//  - optimiser: Cayley SGD with momentum on the orthogonal group, from a randomized Hadamard,
//    cosine learning-rate schedule, stop on iterations or plateau.
#pragma once
#include <string>
#include <vector>

#include "io/text.h"
#include "model/model.h"
#include "transform/rotation.h"

namespace kt {

struct KurtosisObjective {
  double target = 1.8;
  bool squared = true;  // false: minimise the plain mean kurtosis
};

// Loss over the rows of Y [rows, n] and, if G != nullptr, dLoss/dY into G [rows, n].
// mean_kurt (optional) receives the mean per-row kurtosis.
double kurtosis_loss(const float* Y, int64_t rows, int n, const KurtosisObjective& obj, float* G, double* mean_kurt);

// The same loss on the rows of X R (X [rows, n], R [n, n]) and, if A != nullptr, its gradient
// with respect to R, A = X^T dLoss/d(XR) [n, n]: computed chunk_rows rows at a time (<= 0: the
// default below), so X R and its gradient exist one chunk at a time, never whole (at 32 layers
// of a 7B model with --kt-tokens 2048 each would be 2 GiB beside X).
double rotated_kurtosis_loss(const float* X, int64_t rows, int n, const float* R, const KurtosisObjective& obj,
                             float* A, double* mean_kurt, int64_t chunk_rows = 0);
// The default chunk: 16 MiB of rows, at least 256.
int64_t rotated_loss_chunk_rows(int n);

// Per-row kurtosis of a [rows, n] matrix (mean and max over rows).
void row_kurtosis(const float* X, int64_t rows, int n, double* mean, double* max);

struct CayleyOptions {
  int iters = 200;
  double lr = 0.1;        // peak step size (cosine-decayed); the step is also capped at 1/||W||_F
  double momentum = 0.9;
  double tol = 1e-4;      // plateau: relative loss improvement below tol over `patience` steps
  int patience = 30;
  bool progress = false;
  std::string label = "rotation";
  // Rotations up to this size take the exact Cayley step in double precision (an LU solve, Eigen);
  // larger ones the float step: Li et al.'s fixed-point Cayley (2 iterations) followed by one
  // Newton-Schulz step back onto the orthogonal group, all on the deterministic float GEMM
  // kernels. At hidden 4096 the double step costs ~100 s an iteration on 2 cores.
  int exact_up_to = 1024;
  int64_t chunk_rows = 0;  // rows of X per chunk of the loss (rotated_kurtosis_loss); 0: the default
};

struct LearnedRotation {
  Tensor r;  // [n, n]
  std::vector<double> loss;  // per step
  double kurt_before = 0, kurt_after = 0;
  int steps = 0;
  double seconds = 0;
};

// Learns R (n x n orthogonal) minimising the objective on rows X [rows, n], starting at init.
LearnedRotation learn_rotation(const std::vector<float>& X, int64_t rows, int n, const Tensor& init,
                               const KurtosisObjective& obj, const CayleyOptions& opt);

// Activations captured in one streamed full-precision pass (norms folded): per layer, a
// seeded subsample of `budget` token rows of the attention input, MLP input and V heads.
struct KurtailCapture {
  int hidden = 0, head_dim = 0;
  std::vector<std::vector<float>> attn_in, mlp_in;  // [layer][rows * hidden]
  std::vector<std::vector<float>> v_heads;          // [layer][rows * n_kv * head_dim] as rows of head_dim
  int64_t rows_per_layer = 0;
};
KurtailCapture capture_for_kurtail(const Model& m, const Windows& calib, int budget, uint64_t seed, bool progress);

}  // namespace kt
