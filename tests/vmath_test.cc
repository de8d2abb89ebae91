// kurtail's exp (kernels/vmath.h): accurate against libm in double, and its AVX-512 softmax and
// SiLU give the portable forms' bits exactly (on a machine without AVX-512 both sides are the
// portable form).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/vmath.h"

namespace kt {
namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(Vmath, ExpIsWithinAFewUlpOfLibmOverItsRange) {
  double worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const double want = std::exp((double)x), got = exp_ref(x);
    worst = std::max(worst, std::fabs(got - want) / want);
  }
  EXPECT_LT(worst, 4 * 0x1p-24) << "worst relative error " << worst;
  EXPECT_EQ(exp_ref(0.0f), 1.0f);
  // below the clamp: the smallest value it gives, a normal float; NaN stays NaN
  EXPECT_EQ(exp_ref(-1000.0f), exp_ref(-87.3f));
  EXPECT_GE(exp_ref(-1000.0f), std::numeric_limits<float>::min());
  EXPECT_TRUE(std::isfinite(exp_ref(1000.0f)));
  EXPECT_TRUE(std::isnan(exp_ref(std::numeric_limits<float>::quiet_NaN())));
}

TEST(Vmath, SoftmaxRangeMatchesItsPortableFormAndADoubleSoftmax) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  for (int n : {1, 2, 15, 16, 17, 31, 32, 33, 100, 257}) {
    for (int lo : {0, 3}) {
      const int len = lo + n + 5, hi = lo + n - 1;
      std::vector<float> x((size_t)len);
      for (auto& e : x) e = 8 * nd(rng);
      auto got = x, want = x;
      softmax_range(got.data(), lo, hi);
      softmax_range_ref(want.data(), lo, hi);
      ASSERT_TRUE(same_bits(got, want)) << "n " << n << " lo " << lo;
      double mx = -1e30, sum = 0;
      for (int j = lo; j <= hi; j++) mx = std::max(mx, (double)x[j]);
      for (int j = lo; j <= hi; j++) sum += std::exp(x[j] - mx);
      for (int j = 0; j < len; j++) {
        if (j < lo || j > hi) {
          EXPECT_EQ(got[j], x[j]) << "outside the range: left alone";
          continue;
        }
        const double p = std::exp(x[j] - mx) / sum;
        EXPECT_NEAR(got[j], p, 1e-6 * (1 + p)) << "n " << n << " j " << j;
      }
    }
  }
}

TEST(Vmath, SiluMulMatchesItsPortableFormAndADoubleSilu) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (int n : {1, 7, 16, 33, 4096, 4100}) {
    std::vector<float> g((size_t)n), u((size_t)n);
    for (auto& e : g) e = 6 * nd(rng);
    for (auto& e : u) e = nd(rng);
    g[0] = -200.0f;  // exp(200) is past the clamp: the product still goes to ~0, not NaN
    auto got = g, want = g;
    silu_mul(got.data(), u.data(), n);
    silu_mul_ref(want.data(), u.data(), n);
    ASSERT_TRUE(same_bits(got, want)) << "n " << n;
    for (int i = 0; i < n; i++) {
      const double a = g[i], y = a / (1 + std::exp(-a)) * u[i];
      EXPECT_NEAR(got[i], y, 1e-6 * (1 + std::fabs(y))) << "n " << n << " i " << i;
    }
  }
}

}  // namespace
}  // namespace kt
