#include "transform/kurtail.h"



#include <Eigen/Dense>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>

#include "model/forward.h"
#include "transform/fuse.h"
#include "kernels/gemm.h"
#include "util/error.h"
#include "util/progress.h"

namespace kt {

void row_kurtosis(const float* X, int64_t rows, int n, double* mean, double* max) {
  std::vector<double> k((size_t)rows);
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++) {
    const float* y = X + r * n;
    double mu = 0;
    for (int j = 0; j < n; j++) mu += y[j];
    mu /= n;
    double m2 = 0, m4 = 0;
    for (int j = 0; j < n; j++) {
      double c = y[j] - mu, c2 = c * c;
      m2 += c2;
      m4 += c2 * c2;
    }
    m2 /= n;
    m4 /= n;
    k[(size_t)r] = m2 > 0 ? m4 / (m2 * m2) : 0;
  }
  double s = 0, mx = 0;  // serial, in row order: same bits for any thread count
  for (double v : k) s += v, mx = std::max(mx, v);
  if (mean) *mean = rows ? s / rows : 0;
  if (max) *max = mx;
}

namespace {
// The loss terms of the rows of Y [rows, n], one chunk of a set of `total` rows: each row's loss
// and kurtosis are added to loss_sum and k_sum in row order, so the sums have the same bits
// however the set is chunked; G (optional) receives the chunk's rows of dLoss/dY, the loss being
// the mean over all `total` rows.
void kurtosis_rows(const float* Y, int64_t rows, int n, int64_t total, const KurtosisObjective& obj, float* G,
                   double& loss_sum, double& k_sum) {
  // Per-row loss and kurtosis in slots, summed serially afterwards (thread-count independent).
  std::vector<double> row_loss((size_t)rows, 0.0), row_k((size_t)rows, 0.0);
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++) {
    const float* y = Y + r * n;
    double mu = 0;
    for (int j = 0; j < n; j++) mu += y[j];
    mu /= n;
    double m2 = 0, m3 = 0, m4 = 0;
    for (int j = 0; j < n; j++) {
      double c = y[j] - mu, c2 = c * c;
      m2 += c2;
      m3 += c2 * c;
      m4 += c2 * c2;
    }
    m2 /= n;
    m3 /= n;
    m4 /= n;
    if (m2 <= 1e-30) {
      if (G) std::fill(G + r * n, G + (r + 1) * n, 0.0f);
      continue;
    }
    const double k = m4 / (m2 * m2);
    row_k[(size_t)r] = k;
    row_loss[(size_t)r] = obj.squared ? (k - obj.target) * (k - obj.target) : k;
    if (G) {
      // dk/dy_j = 4/(n m2^2) (c_j^3 - mean c^3) - 4 m4/(n m2^3) c_j ; outer factor 2(k-t) or 1; / total
      const double outer = (obj.squared ? 2 * (k - obj.target) : 1.0) / total;
      const double a = 4.0 / (n * m2 * m2), b = 4.0 * m4 / (n * m2 * m2 * m2);
      for (int j = 0; j < n; j++) {
        double c = y[j] - mu;
        G[r * n + j] = (float)(outer * (a * (c * c * c - m3) - b * c));
      }
    }
  }
  for (int64_t r = 0; r < rows; r++) loss_sum += row_loss[(size_t)r], k_sum += row_k[(size_t)r];
}
}  // namespace

double kurtosis_loss(const float* Y, int64_t rows, int n, const KurtosisObjective& obj, float* G, double* mean_kurt) {
  double loss = 0, ksum = 0;
  kurtosis_rows(Y, rows, n, rows, obj, G, loss, ksum);
  if (mean_kurt) *mean_kurt = rows ? ksum / rows : 0;
  return rows ? loss / rows : 0;
}

int64_t rotated_loss_chunk_rows(int n) { return std::max<int64_t>(256, (int64_t(16) << 20) / (4 * (int64_t)n)); }

double rotated_kurtosis_loss(const float* X, int64_t rows, int n, const float* R, const KurtosisObjective& obj,
                             float* A, double* mean_kurt, int64_t chunk_rows) {
  if (chunk_rows <= 0) chunk_rows = rotated_loss_chunk_rows(n);
  const int64_t C = std::max<int64_t>(1, std::min(rows, chunk_rows));
  std::vector<float> Y((size_t)C * n), G(A ? (size_t)C * n : 0);
  if (A && rows == 0) std::fill(A, A + (size_t)n * n, 0.0f);
  double loss = 0, ksum = 0;
  for (int64_t r0 = 0; r0 < rows; r0 += C) {
    const int64_t m = std::min(C, rows - r0);
    const float* Xc = X + r0 * n;
    sgemm(false, false, m, n, n, 1.0f, Xc, n, R, n, 0.0f, Y.data(), n);  // the chunk's rows of X R
    kurtosis_rows(Y.data(), m, n, rows, obj, A ? G.data() : nullptr, loss, ksum);
    if (A) sgemm(true, false, n, n, m, 1.0f, Xc, n, G.data(), n, r0 ? 1.0f : 0.0f, A, n);  // A += Xc^T Gc
  }
  if (mean_kurt) *mean_kurt = rows ? ksum / rows : 0;
  return rows ? loss / rows : 0;
}

namespace {

// C = A B (or with A / B transposed), n x n row-major, on the deterministic GEMM kernels
void mm(bool ta, bool tb, int n, const float* A, const float* B, float* C) {
  sgemm(ta, tb, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
}

// R <- 1.5 R - 0.5 R (R^T R): one Newton-Schulz step toward the nearest orthogonal matrix (the
// polar factor); quadratic when R is already near orthogonal. Returns max |R^T R - I| before.
double newton_schulz(std::vector<float>& R, int n, std::vector<float>& S, std::vector<float>& T) {
  mm(true, false, n, R.data(), R.data(), S.data());  // S = R^T R
  double err = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) err = std::max(err, std::fabs((double)S[(size_t)i * n + j] - (i == j)));
  mm(false, false, n, R.data(), S.data(), T.data());  // T = R S
  for (size_t i = 0; i < R.size(); i++) R[i] = 1.5f * R[i] - 0.5f * T[i];
  return err;
}

// The loop both Cayley steps share: the loss of X R (with its gradient in grad while steps
// remain), best-so-far and plateau bookkeeping, progress. rf() gives the current R in float,
// keep() records it as the best, step(it) takes one Cayley step from grad.
template <class RF, class Keep, class Step>
void descend(const std::vector<float>& X, int64_t rows, int n, const KurtosisObjective& obj, const CayleyOptions& opt,
             LearnedRotation& out, float* grad, RF rf, Keep keep, Step step) {
  double best = INFINITY;
  int since_best = 0;
  Progress prog(opt.label, opt.iters, opt.progress);
  for (int it = 0; it <= opt.iters; it++) {
    double mk = 0;  // the loss of X R, and while steps remain its gradient dL/dR = X^T dL/dY into grad
    const double loss =
        rotated_kurtosis_loss(X.data(), rows, n, rf(), obj, it < opt.iters ? grad : nullptr, &mk, opt.chunk_rows);
    if (it == 0) out.kurt_before = mk;
    out.kurt_after = mk;
    out.loss.push_back(loss);
    if (loss < best * (1 - opt.tol)) {
      best = loss;
      keep();
      since_best = 0;
    } else if (++since_best >= opt.patience) {
      break;
    }
    if (loss <= best) keep();
    if (it == opt.iters) break;
    char buf[96];
    std::snprintf(buf, sizeof buf, "loss %.5f  mean kurtosis %.4f", loss, mk);
    prog.update(it + 1, 0, buf);
    step(it);
    out.steps = it + 1;
  }
  prog.finish();
}

// The float Cayley SGD of learn_rotation, for large n (CayleyOptions::exact_up_to).
LearnedRotation learn_rotation_float(const std::vector<float>& X, int64_t rows, int n, const Tensor& init,
                                     const KurtosisObjective& obj, const CayleyOptions& opt) {
  auto t0 = std::chrono::steady_clock::now();
  LearnedRotation out;
  const size_t nn = (size_t)n * n;
  std::vector<float> R(init.data.begin(), init.data.end()), M(nn, 0.0f), bestR = R;
  std::vector<float> A(nn), W(nn), P(nn), Q(nn);  // A: the gradient X^T G, then scratch
  auto step = [&](int it) {
    for (size_t i = 0; i < nn; i++) M[i] = (float)opt.momentum * M[i] + A[i];
    // the skew generator W = M R^T - R M^T = A - A^T with A = M R^T
    mm(false, true, n, M.data(), R.data(), A.data());
    double wn = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        const float w = A[(size_t)i * n + j] - A[(size_t)j * n + i];
        W[(size_t)i * n + j] = w;
        wn += (double)w * w;
      }
    const double lr = 0.5 * opt.lr * (1 + std::cos(M_PI * it / opt.iters));
    const float alpha = (float)std::min(lr, 1.0 / (std::sqrt(wn) + 1e-12));
    // The exact step's R' = (I + a/2 W)^-1 (I - a/2 W) R solves R' = R - a/2 W (R + R'): iterated
    // from R' = R - a W R, twice (Li, Fuxin & Todorovic 2020); ||a W|| <= 1 makes it contract
    mm(false, false, n, W.data(), R.data(), P.data());
    for (size_t i = 0; i < nn; i++) Q[i] = R[i] - alpha * P[i];
    for (int k = 0; k < 2; k++) {
      for (size_t i = 0; i < nn; i++) A[i] = R[i] + Q[i];
      mm(false, false, n, W.data(), A.data(), P.data());
      for (size_t i = 0; i < nn; i++) Q[i] = R[i] - 0.5f * alpha * P[i];
    }
    R.swap(Q);
    (void)newton_schulz(R, n, P, Q);  // back onto the group (float drift, the truncated Cayley)
    // keep the momentum tangent at the new point: M <- (M - R M^T R) / 2
    mm(true, false, n, M.data(), R.data(), P.data());  // P = M^T R
    mm(false, false, n, R.data(), P.data(), Q.data());  // Q = R M^T R
    for (size_t i = 0; i < nn; i++) M[i] = 0.5f * (M[i] - Q[i]);
  };
  descend(X, rows, n, obj, opt, out, A.data(), [&] { return R.data(); }, [&] { bestR = R; }, step);
  // polish: Newton-Schulz until R^T R is the identity to float precision
  for (int k = 0; k < 6 && newton_schulz(bestR, n, P, Q) > 1e-6; k++) {
  }
  out.r = Tensor({n, n});
  std::copy(bestR.begin(), bestR.end(), out.r.data.begin());
  rotated_kurtosis_loss(X.data(), rows, n, out.r.data.data(), obj, nullptr, &out.kurt_after, opt.chunk_rows);
  out.seconds = seconds_since(t0);
  return out;
}

}  // namespace

LearnedRotation learn_rotation(const std::vector<float>& X, int64_t rows, int n, const Tensor& init,
                               const KurtosisObjective& obj, const CayleyOptions& opt) {
  if (n > opt.exact_up_to) return learn_rotation_float(X, rows, n, init, obj, opt);
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  auto t0 = std::chrono::steady_clock::now();
  LearnedRotation out;
  Mat R(n, n);
  for (int64_t i = 0; i < (int64_t)n * n; i++) R.data()[i] = init.data[i];
  Mat M = Mat::Zero(n, n);  // momentum (tangent vector at the current point)
  std::vector<float> Rf((size_t)n * n), Gr((size_t)n * n);  // R in float; the gradient X^T G
  const Mat I = Mat::Identity(n, n);
  Mat bestR = R;
  auto rf = [&] {  // the current R in float, for the float GEMM of the loss
    for (int64_t i = 0; i < (int64_t)n * n; i++) Rf[i] = (float)R.data()[i];
    return Rf.data();
  };
  auto step = [&](int it) {
    Mat Ge(n, n);  // the Euclidean gradient dL/dR = X^T G (descend computed it)
    for (int64_t i = 0; i < (int64_t)n * n; i++) Ge.data()[i] = Gr[i];
    // momentum in the tangent space, then the skew generator W = M R^T - R M^T
    M = opt.momentum * M + Ge;
    Mat W = M * R.transpose() - R * M.transpose();
    const double lr = 0.5 * opt.lr * (1 + std::cos(M_PI * it / opt.iters));
    const double alpha = std::min(lr, 1.0 / (W.norm() + 1e-12));
    // Cayley retraction: R <- (I + a/2 W)^-1 (I - a/2 W) R  (exactly orthogonal for skew W)
    R = (I + 0.5 * alpha * W).partialPivLu().solve((I - 0.5 * alpha * W) * R);
    M = 0.5 * (M - R * M.transpose() * R);  // keep the momentum tangent at the new point
  };
  descend(X, rows, n, obj, opt, out, Gr.data(), rf, [&] { bestR = R; }, step);
  // re-orthonormalise away float drift (polar factor via SVD is exact; it is tiny here)
  Eigen::JacobiSVD<Mat> svd(bestR, Eigen::ComputeFullU | Eigen::ComputeFullV);
  bestR = svd.matrixU() * svd.matrixV().transpose();
  out.r = Tensor({n, n});
  for (int64_t i = 0; i < (int64_t)n * n; i++) out.r.data[i] = (float)bestR.data()[i];
  // report the kurtosis of the returned matrix
  rotated_kurtosis_loss(X.data(), rows, n, out.r.data.data(), obj, nullptr, &out.kurt_after, opt.chunk_rows);
  out.seconds = seconds_since(t0);
  return out;
}

namespace {

// Collects a fixed, seeded subset of token rows at AttnIn, MlpIn and V.
class CaptureRows : public Hooks {
 public:
  CaptureRows(KurtailCapture* c, const std::vector<int64_t>* pick, int64_t offset) : c_(c), pick_(pick), off_(offset) {}
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    std::vector<float>* dst = site == Site::AttnIn ? &c_->attn_in[layer]
                              : site == Site::MlpIn ? &c_->mlp_in[layer]
                              : site == Site::V     ? &c_->v_heads[layer]
                                                    : nullptr;
    if (!dst) return;
    for (int64_t p : *pick_)
      if (p >= off_ && p < off_ + rows) dst->insert(dst->end(), x + (p - off_) * cols, x + (p - off_ + 1) * cols);
  }

 private:
  KurtailCapture* c_;
  const std::vector<int64_t>* pick_;
  int64_t off_;
};

}  // namespace

KurtailCapture capture_for_kurtail(const Model& m, const Windows& calib, int budget, uint64_t seed, bool progress) {
  const ModelSpec& s = m.spec;
  KurtailCapture c;
  c.hidden = s.hidden;
  c.head_dim = s.head_dim;
  c.attn_in.resize(s.n_layers);
  c.mlp_in.resize(s.n_layers);
  c.v_heads.resize(s.n_layers);
  const int64_t total = (int64_t)calib.tokens.size();
  std::vector<int64_t> all(total);
  std::iota(all.begin(), all.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  if (budget > 0 && budget < total) all.resize(budget);
  std::sort(all.begin(), all.end());
  c.rows_per_layer = (int64_t)all.size();
  std::vector<float> x((size_t)total * s.hidden);
  embed_tokens(m, calib.tokens.data(), total, x.data());
  Progress prog("kurtail capture", s.n_layers, progress);
  for (int l = 0; l < s.n_layers; l++) {
    // a copy to fold: streamed, the only one in memory (layer() would cache a second)
    LayerWeights w = m.take_layer(l);
    fold_layer_norms(w);  // capture x / rms(x), the input the folded linears see
    std::optional<CaptureRows> hook;  // one per chunk: it knows the chunk's first row
    for_each_layer_chunk(s, w, l, x.data(), calib.n(), calib.ctx, layer_chunk_windows(s, calib.ctx), [&](int b0) -> Hooks* {
      hook.emplace(&c, &all, (int64_t)b0 * calib.ctx);
      return &*hook;
    });
    prog.update(l + 1, (int64_t)(l + 1) * total);
  }
  prog.finish();
  return c;
}

}  // namespace kt
