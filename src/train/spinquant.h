// SpinQuant's rotation learning (arXiv 2405.16406, facebookresearch/SpinQuant
// optimize_rotation.py): R1 and every layer's R2 start from the given rotations (the recipe's
// randomized Hadamards, as QuaRot would fuse them) and follow Cayley SGD on the end-to-end
// cross-entropy of the quantized model (train/rotated_decoder.h), `batch` calibration windows
// per step (the gradient accumulated one window at a time: memory is one window's activations),
// with a cosine learning-rate schedule (HF's, no warm-up).
#pragma once
#include <cstdint>
#include <vector>

#include "io/text.h"
#include "train/rotated_decoder.h"

namespace kt::train {

struct SpinOptions {
  int iters = 100;         // SpinQuant: 100 steps
  double lr = 1.5;         // SpinQuant: 1.5 (the Cayley step is also capped at 1 / ||W||_1)
  int batch = 0;           // windows per step; 0: ceil(windows / iters), one pass over the calibration
  double momentum = 0;     // SpinQuant: 0
  bool learn_r1 = true, learn_r2 = true;
  uint64_t seed = 0;       // the optimiser's QR draws
  bool progress = false;
};

struct SpinResult {
  std::vector<float> r1;                // [hidden*hidden]
  std::vector<std::vector<float>> r2;   // [layer][head_dim*head_dim]
  std::vector<double> loss;             // per step (the step's windows' mean loss before the step)
  double loss_init = 0, loss_final = 0; // on the first step's windows, before and after learning
  int steps = 0, batch = 0, qr_retractions = 0;
  double orthogonality_error = 0;       // max |R R^T - I| over R1 and every R2
  double seconds = 0;
};

SpinResult learn_spinquant(const Model& m, const LossQuant& q, const Windows& calib, const std::vector<float>& r1,
                           const std::vector<std::vector<float>>& r2, const SpinOptions& o);

}  // namespace kt::train
