#include "quant/gptq.h"



#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/gemm.h"
#include "kernels/wtype.h"
#include "quant/methods.h"
#include "quant/options.h"
#include "quant/recipe.h"
#include "util/error.h"

namespace kt {

void Hessian::add(const float* x, int64_t rows) {
  if (rows == 0) return;
  // float X^T X per chunk (fast; the full product through the deterministic tiled sgemm, of
  // which the upper triangle is used), accumulated into double
  std::vector<float> c((size_t)n_ * n_, 0.0f);
  sgemm(true, false, n_, n_, rows, 1.0f, x, n_, x, n_, 0.0f, c.data(), n_);
  for (int64_t i = 0; i < n_; i++)
    for (int64_t j = i; j < n_; j++) {
      h_[(size_t)i * n_ + j] += c[(size_t)i * n_ + j];
      if (j != i) h_[(size_t)j * n_ + i] += c[(size_t)i * n_ + j];
    }
  count_ += rows;
}

void rtn_quantize(Linear& l, const QuantSpec& ws) {
  if (!ws.enabled()) return;
  const int64_t rows = l.out(), cols = l.in();
  const int64_t g = ws.gran == Granularity::PerGroup && ws.group > 0 ? ws.group : cols;
  // Scales are recorded (l.qscale / l.qbits: w = code * scale) exactly for specs with a packed
  // weight type (kernels/wtype.h); quant/validate_model.cc expects them for the same specs.
  const bool rec = wtype_for(ws).has_value() && cols % g == 0;
  if (rec) {
    l.qscale = Tensor({rows, cols / g});
    l.qbits = ws.bits;
  }
  if (ws.gran == Granularity::PerTensor) {
    fake_quant_ref(l.w.ptr(), rows, cols, ws);
    return;
  }
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
      float* p = l.w.ptr() + r * cols + c0;
      const int64_t n = std::min(g, cols - c0);
      QParams qp = find_params_ref(p, n, ws);
      for (int64_t k = 0; k < n; k++) p[k] = dequantize_level(quantize_level(p[k], qp, ws), qp);
      if (rec) l.qscale.data[r * (cols / g) + c0 / g] = qp.scale;
    }
}

void gptq_quantize(Linear& l, const Hessian& hs, const QuantSpec& ws, const GptqOptions& opt) {
  if (!ws.enabled()) return;
  const int64_t rows = l.out(), cols = l.in();
  if (hs.n() != cols) fail("GPTQ: Hessian size does not match the layer input");
  using Mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Mat H = Eigen::Map<const Mat>(hs.data().data(), cols, cols) / std::max<int64_t>(1, hs.samples());
  Mat W(rows, cols);
  for (int64_t i = 0; i < rows * cols; i++) W.data()[i] = l.w.data[i];

  // dead inputs (never active): H_ii = 1, W column = 0
  for (int64_t j = 0; j < cols; j++)
    if (H(j, j) == 0) {
      H(j, j) = 1;
      W.col(j).setZero();
    }
  std::vector<int64_t> perm(cols);
  std::iota(perm.begin(), perm.end(), 0);
  if (opt.act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H(a, a) > H(b, b); });
    Mat H2(cols, cols), W2(rows, cols);
    for (int64_t i = 0; i < cols; i++) {
      W2.col(i) = W.col(perm[i]);
      for (int64_t j = 0; j < cols; j++) H2(i, j) = H(perm[i], perm[j]);
    }
    H = H2;
    W = W2;
  }
  const double damp = opt.percdamp * H.diagonal().mean();
  H.diagonal().array() += damp;
  // Hinv = upper Cholesky factor of H^-1 (GPTQ's formulation)
  Eigen::LLT<Mat> llt(H);
  if (llt.info() != Eigen::Success) fail("--percdamp", "GPTQ Hessian is not positive definite even after dampening (raise --percdamp)");
  Mat Hinv = llt.solve(Mat::Identity(cols, cols));
  Eigen::LLT<Mat> llt2(Hinv);
  if (llt2.info() != Eigen::Success) fail("GPTQ: inverse Hessian Cholesky failed");
  Mat U = llt2.matrixU();

  // Per-row quantizer params from the full (permuted) rows unless grouped.
  const bool grouped = ws.gran == Granularity::PerGroup && ws.group > 0;
  std::vector<QParams> params(rows);
  auto find_row_params = [&](int64_t c0, int64_t n) {
    std::vector<float> tmp(n);
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t j = 0; j < n; j++) tmp[j] = (float)W(r, c0 + j);
      params[r] = find_params_ref(tmp.data(), n, ws);
    }
  };
  if (ws.gran == Granularity::PerTensor) {
    std::vector<float> all(W.data(), W.data() + rows * cols);
    for (int64_t i = 0; i < rows * cols; i++) all[i] = (float)W.data()[i];
    QParams p = find_params_ref(all.data(), rows * cols, ws);
    std::fill(params.begin(), params.end(), p);
  } else if (!grouped) {
    find_row_params(0, cols);
  }

  const int64_t G = grouped ? (cols + ws.group - 1) / ws.group : 1;
  const bool rec = wtype_for(ws).has_value() && (!grouped || (cols % ws.group == 0 && !opt.act_order));
  std::vector<float> scales(rec ? rows * G : 0);
  if (rec && !grouped)
    for (int64_t r = 0; r < rows; r++) scales[r] = params[r].scale;
  Mat Q = Mat::Zero(rows, cols);
  const int64_t B = std::max(1, opt.block);
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols), cnt = i2 - i1;
    Mat Err(rows, cnt);
    for (int64_t i = 0; i < cnt; i++) {
      const int64_t c = i1 + i;
      if (grouped && c % ws.group == 0) {
        find_row_params(c, std::min<int64_t>(ws.group, cols - c));
        if (rec)
          for (int64_t r = 0; r < rows; r++) scales[r * G + c / ws.group] = params[r].scale;
      }
      const double d = U(c, c);
      for (int64_t r = 0; r < rows; r++) {
        double wv = W(r, c);
        double q = dequantize_level(quantize_level((float)wv, params[r], ws), params[r]);
        Q(r, c) = q;
        Err(r, i) = (wv - q) / d;
      }
      // propagate within the block
      for (int64_t j = c + 1; j < i2; j++) {
        double u = U(c, j);
        if (u != 0) W.col(j) -= Err.col(i) * u;
      }
    }
    if (i2 < cols) W.rightCols(cols - i2) -= Err * U.block(i1, i2, cnt, cols - i2);
  }
  // undo the permutation; Q holds exact dequantized values (float of q * scale)
  for (int64_t i = 0; i < cols; i++)
    for (int64_t r = 0; r < rows; r++) l.w.data[(size_t)r * cols + perm[i]] = (float)Q(r, i);
  if (rec) {
    l.qscale = Tensor({rows, G});
    l.qscale.data = scales;
    l.qbits = ws.bits;
  }
}

}  // namespace kt

// GPTQ's settings in recipe.json ("gptq": {...}) and on the CLI, declared once (quant/options.h).
// The pipeline reads them through QuantizeOptions::gptq (cli/cmd_quantize.cc copies them).
namespace kt {
namespace {
void visit_gptq(Recipe& r, OptionVisitor& v) {
  v.real_f32(r.percdamp, 0.01, {"percdamp", "--percdamp", "GPTQ dampening (fraction of the mean Hessian diagonal)"},
             {0, 1});
  v.integer(r.gptq_block, 128, {"block", nullptr, "GPTQ lazy-batch block size"}, {1, kMaxCount});
  v.flag(r.act_order, false, {"act_order", "--act-order", "GPTQ: quantize columns by decreasing Hessian diagonal"});
}
}  // namespace
extern const OptionSection kGptqOptions = {"gptq", visit_gptq, /*in_every_recipe=*/true};
}  // namespace kt
