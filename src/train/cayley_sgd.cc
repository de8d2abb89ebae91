#include "train/cayley_sgd.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

namespace kt::train {

namespace {
using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The orthonormal factor of X's rows (QR of X^T, signs fixed so it is the nearest continuous choice).
Mat qr_orthonormal(const Mat& X) {
  const int n = (int)X.rows();
  Eigen::HouseholderQR<Mat> qr(X.transpose());
  Mat q = qr.householderQ() * Mat::Identity(n, n);
  Mat r = qr.matrixQR().triangularView<Eigen::Upper>();
  for (int j = 0; j < n; j++)
    if (r(j, j) < 0) q.col(j) = -q.col(j);
  return q.transpose();
}
}  // namespace

CayleySgdState::CayleySgdState(int n, const CayleySgd& o) : n_(n), o_(o), v_((size_t)n * n, 0.0), rng_(o.seed) {}

void CayleySgdState::step(std::vector<float>& R, const std::vector<float>& G, double lr) {
  const int n = n_;
  Mat X(n, n), g(n, n);
  for (int64_t i = 0; i < (int64_t)n * n; i++) X.data()[i] = R[i], g.data()[i] = G[i];
  // rows normalised (SpinQuant's `unit`, eps 1e-8 on the norm)
  for (int i = 0; i < n; i++) X.row(i) /= X.row(i).norm() + 1e-8;
  if (std::uniform_int_distribution<int>(1, 101)(rng_) == 1) {  // SpinQuant's occasional QR retraction
    X = qr_orthonormal(X);
    qr_++;
  }
  Eigen::Map<Mat> V(v_.data(), n, n);
  V = o_.momentum * V - g.transpose();
  const Mat MX = V * X;
  const Mat XMX = X * MX;
  const Mat XXMX = X.transpose() * XMX;
  const Mat What = MX - 0.5 * XXMX;
  const Mat W = What - What.transpose();
  const double norm1 = W.cwiseAbs().colwise().sum().maxCoeff();
  const double alpha = std::min(1.0 / (norm1 + 1e-8), lr);
  const Mat Xt = X.transpose();
  Mat Y = Xt + alpha * V;
  for (int i = 0; i < 5; i++) Y = Xt + alpha * W * (0.5 * (Xt + Y));
  V = W * Xt;
  Mat Rn = Y.transpose();
  // Five fixed-point steps leave the Cayley transform inexact when alpha ||W|| is near its cap
  // (tens of 1e-6 per step, growing over steps); SpinQuant's random QR bounds that drift only
  // now and then. kurtail also re-orthonormalises whenever it exceeds 1e-6, so every step
  // returns a rotation (the fused model then keeps the FP function to float rounding).
  if ((Rn * Rn.transpose() - Mat::Identity(n, n)).cwiseAbs().maxCoeff() > 1e-6) {
    Rn = qr_orthonormal(Rn);
    qr_++;
  }
  for (int64_t i = 0; i < (int64_t)n * n; i++) R[i] = (float)Rn.data()[i];
}

double orthogonality_error(const std::vector<float>& R, int n) {
  Mat X(n, n);
  for (int64_t i = 0; i < (int64_t)n * n; i++) X.data()[i] = R[i];
  return (X * X.transpose() - Mat::Identity(n, n)).cwiseAbs().maxCoeff();
}

}  // namespace kt::train
