// KurTail: the analytic gradient against finite differences, orthogonality of the learned
// rotation, improvement over a Hadamard start on planted outliers, and exact FP equivalence.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "model/forward.h"
#include "quant/pipeline.h"
#include "quant/session.h"
#include "test_util.h"
#include "transform/kurtail.h"

namespace kt {
namespace {

std::vector<float> heavy_tailed(int64_t rows, int n, unsigned seed, int outlier_ch, float outlier_scale) {
  std::mt19937 g(seed);
  std::student_t_distribution<float> t(3.0f);
  std::vector<float> x((size_t)rows * n);
  for (auto& v : x) v = t(g);
  for (int64_t r = 0; r < rows; r++)
    for (int c = 0; c < outlier_ch; c++) x[(size_t)r * n + c * 7 % n] *= outlier_scale;
  return x;
}

TEST(Kurtail, GradientMatchesFiniteDifferences) {
  const int rows = 6, n = 16;
  auto y = heavy_tailed(rows, n, 1, 2, 5.0f);
  for (bool squared : {true, false}) {
    KurtosisObjective obj{1.8, squared};
    std::vector<float> g((size_t)rows * n);
    kurtosis_loss(y.data(), rows, n, obj, g.data(), nullptr);
    for (int i = 0; i < rows * n; i += 5) {
      const float h = 1e-3f * (1 + std::fabs(y[i]));
      auto yp = y, ym = y;
      yp[i] += h;
      ym[i] -= h;
      double fd = (kurtosis_loss(yp.data(), rows, n, obj, nullptr, nullptr) -
                   kurtosis_loss(ym.data(), rows, n, obj, nullptr, nullptr)) / (2.0 * h);
      EXPECT_NEAR(g[i], fd, 2e-3 * (1 + std::fabs(fd))) << "element " << i << " squared " << squared;
    }
  }
}

// The loss of X R and its gradient with respect to R, chunk by chunk, against the whole
// product made here in double and the chain rule written out: A = X^T dL/dY.
TEST(Kurtail, RotatedLossInChunksIsTheLossOfTheWholeProduct) {
  const int64_t rows = 1000;
  const int n = 64;
  auto x = heavy_tailed(rows, n, 4, 3, 10.0f);
  Tensor R = Rotation::hadamard(n, true, 5).matrix();
  std::vector<float> y((size_t)rows * n);
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int k = 0; k < n; k++) acc += (double)x[(size_t)r * n + k] * R.data[(size_t)k * n + j];
      y[(size_t)r * n + j] = (float)acc;
    }
  for (bool squared : {true, false}) {
    SCOPED_TRACE(squared ? "squared" : "plain");
    const KurtosisObjective obj{1.8, squared};
    std::vector<float> g(y.size());
    double mk_ref = 0;
    const double loss_ref = kurtosis_loss(y.data(), rows, n, obj, g.data(), &mk_ref);
    std::vector<double> a_ref((size_t)n * n, 0.0);
    double a_max = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        double acc = 0;
        for (int64_t r = 0; r < rows; r++) acc += (double)x[(size_t)r * n + i] * g[(size_t)r * n + j];
        a_ref[(size_t)i * n + j] = acc;
        a_max = std::max(a_max, std::fabs(acc));
      }
    ASSERT_GT(a_max, 0);
    for (int64_t chunk : {1, 7, 256, 1000, 5000, 0}) {  // a single row, remainders, one chunk, the default
      SCOPED_TRACE("chunk " + std::to_string(chunk));
      std::vector<float> a((size_t)n * n, NAN);
      double mk = 0;
      const double loss = rotated_kurtosis_loss(x.data(), rows, n, R.data.data(), obj, a.data(), &mk, chunk);
      EXPECT_NEAR(loss, loss_ref, 1e-5 * std::fabs(loss_ref));
      EXPECT_NEAR(mk, mk_ref, 1e-5 * mk_ref);
      double worst = 0;
      for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, std::fabs(a[i] - a_ref[i]));
      EXPECT_LT(worst, 1e-4 * a_max);
      double mk_only = 0;  // without the gradient: the same loss
      EXPECT_EQ(rotated_kurtosis_loss(x.data(), rows, n, R.data.data(), obj, nullptr, &mk_only, chunk), loss);
      EXPECT_EQ(mk_only, mk);
    }
  }
}

TEST(Kurtail, KurtosisOfKnownVectors) {
  // {-1, 1} alternating: kurtosis 1; a single spike in n zeros-ish vector is n-ish
  std::vector<float> pm(8);
  for (int i = 0; i < 8; i++) pm[i] = i % 2 ? 1.0f : -1.0f;
  double k;
  kurtosis_loss(pm.data(), 1, 8, KurtosisObjective{}, nullptr, &k);
  EXPECT_NEAR(k, 1.0, 1e-9);
  std::vector<float> spike(10, 0.0f);
  spike[3] = 1.0f;  // c = 0.9 once, -0.1 nine times: m2 = 0.09, m4 = 0.0657 -> 8.111...
  kurtosis_loss(spike.data(), 1, 10, KurtosisObjective{}, nullptr, &k);
  EXPECT_NEAR(k, 0.0657 / (0.09 * 0.09), 1e-6);
}

// Both Cayley steps: the exact one (double, LU) and the float one of large rotations
// (fixed-point Cayley + Newton-Schulz on the GEMM kernels), forced here at n = 64.
TEST(Kurtail, LearnedRotationBeatsHadamardAndStaysOrthogonal) {
  const int n = 64;
  const int64_t rows = 2048;
  auto x = heavy_tailed(rows, n, 2, 3, 20.0f);  // planted outlier channels
  Tensor init = Rotation::hadamard(n, true, 3).matrix();
  double final_loss[2];
  for (int exact : {1, 0}) {
    SCOPED_TRACE(exact ? "exact Cayley" : "float Cayley");
    CayleyOptions co;
    co.iters = 300;
    co.patience = 1000;  // run every step: orthogonality must survive many updates
    co.exact_up_to = exact ? n : n - 1;
    co.chunk_rows = 500;  // the loss and its gradient in chunks, the last one short
    LearnedRotation lr = learn_rotation(x, rows, n, init, KurtosisObjective{}, co);
    double k_orig;
    row_kurtosis(x.data(), rows, n, &k_orig, nullptr);
    EXPECT_GT(k_orig, lr.kurt_before);  // the Hadamard already helps ...
    // ... and learning from the Hadamard start still improves the objective and the kurtosis
    EXPECT_LT(lr.loss.back(), 0.5 * lr.loss.front()) << lr.loss.front() << " -> " << lr.loss.back();
    EXPECT_LT(lr.kurt_after, lr.kurt_before) << lr.kurt_before << " -> " << lr.kurt_after;
    EXPECT_EQ(lr.steps, 300);
    final_loss[exact] = lr.loss.back();
    double worst = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        double d = 0;
        for (int k = 0; k < n; k++) d += (double)lr.r.data[i * n + k] * lr.r.data[j * n + k];
        worst = std::max(worst, std::fabs(d - (i == j)));
      }
    EXPECT_LT(worst, 1e-5);
    // deterministic: same inputs, same bits
    LearnedRotation again = learn_rotation(x, rows, n, init, KurtosisObjective{}, co);
    EXPECT_EQ(again.r.data, lr.r.data);
  }
  // the float step follows the same descent: its objective ends within 10 % of the exact one's
  EXPECT_NEAR(final_loss[0], final_loss[1], 0.1 * final_loss[1]);
}

TEST(Kurtail, FusedLearnedRotationsKeepFpLogits) {
  auto base = Model::open(test::tinyllama());
  auto m = Model::open(test::tinyllama());
  QuantizeOptions o;
  o.progress = false;
  o.recipe.set_method("kurtail");
  o.recipe.set_bits(16, 16, 16, m->spec.head_dim);
  o.recipe.kurtail.iters = 20;
  o.recipe.kurtail.budget = 256;
  o.calib_path = test::data() + "/text/calib.txt";
  o.nsamples = 4;
  o.seqlen = 128;
  QuantizeReport rep = quantize_model(*m, o);
  EXPECT_LT(rep.kt_r1_kurt_final, rep.kt_r1_kurt_init);
  std::vector<int32_t> toks;
  for (int i = 0; i < 40; i++) toks.push_back(1 + i * 131 % 8000);
  Session hooks(*m, o.recipe);
  auto want = forward(*base, toks.data(), 1, 40, nullptr, nullptr);
  auto got = forward(*m, toks.data(), 1, 40, nullptr, hooks.hooks());
  EXPECT_LT(test::max_rel_diff(got, want), 1e-4);
}

}  // namespace
}  // namespace kt
