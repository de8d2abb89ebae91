// Cayley SGD on the orthogonal group, as SpinQuant's SGDG optimiser (train_utils/optimizer.py,
// stiefel=True) takes a step for a square parameter X:
//   V <- momentum V - G^T;  skew W = W_hat - W_hat^T with W_hat = V X - 1/2 X^T (X V X) ... (below)
//   alpha = min(lr, 1 / (||W||_1 + eps))  (||.||_1: the largest column sum of |W|)
//   Y = X + alpha V, then five fixed-point steps Y <- X + alpha W (X + Y) / 2  (the Cayley
//   retraction (I - a/2 W)^-1 (I + a/2 W) X, solved iteratively);  V <- W X.
// SpinQuant works on X = R^T with rows normalised first and, with probability 1/101 per step,
// re-orthonormalises by QR; here that draw takes a seeded generator so runs repeat bit for bit,
// and a QR also runs whenever the drift max |R R^T - I| exceeds 1e-6 (cayley_sgd.cc says why).
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace kt::train {

struct CayleySgd {
  double momentum = 0;  // SpinQuant trains with 0
  uint64_t seed = 0;
};

class CayleySgdState {
 public:
  CayleySgdState(int n, const CayleySgd& o);
  // One step on R [n*n] (row-major, orthogonal) with the Euclidean gradient G = dLoss/dR.
  void step(std::vector<float>& R, const std::vector<float>& G, double lr);
  int qr_retractions() const { return qr_; }  // random draws and drift corrections

 private:
  int n_;
  CayleySgd o_;
  std::vector<double> v_;  // momentum buffer [n*n]
  std::mt19937_64 rng_;
  int qr_ = 0;
};

// max |R R^T - I| (tests and reports).
double orthogonality_error(const std::vector<float>& R, int n);

}  // namespace kt::train
