// Quantizer properties against the scalar reference, GPTQ vs RTN, Hadamard constructions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <random>
#include <set>

#include "model/forward.h"
#include "quant/gptq.h"
#include "test_util.h"
#include "core/mse_clip.h"
#include "core/quantizer.h"
#include "quant/recipe.h"
#include "transform/rotation.h"
#include "util/error.h"

namespace kt {
namespace {

using test::randn;

TEST(Quantizer, SymmetricLevelsAndScale) {
  QuantSpec s;
  s.bits = 4;
  std::vector<float> x = {-3.5f, -1.0f, 0.0f, 0.2f, 1.1f, 7.0f};
  QParams p = find_params_ref(x.data(), x.size(), s);
  EXPECT_FLOAT_EQ(p.scale, 7.0f / 7);  // absmax / (2^(b-1)-1)
  EXPECT_EQ(p.zero, 0);
  auto y = x;
  fake_quant_ref(y.data(), 1, y.size(), s);
  std::vector<float> want = {-4.0f, -1.0f, 0.0f, 0.0f, 1.0f, 7.0f};  // -3.5 rounds to even (-4)
  EXPECT_EQ(y, want);
  for (float v : y) EXPECT_EQ(v, std::round(v));
}

TEST(Quantizer, AsymmetricZeroPointAndRange) {
  QuantSpec s;
  s.bits = 4;
  s.symmetric = false;
  std::vector<float> x = {0.5f, 1.0f, 2.0f, 3.5f};  // range forced to include 0: [0, 3.5]
  QParams p = find_params_ref(x.data(), x.size(), s);
  EXPECT_FLOAT_EQ(p.scale, 3.5f / 15);
  EXPECT_EQ(p.zero, 0);
  std::vector<float> y = {-2.0f, -1.0f, 0.0f, 1.0f};
  p = find_params_ref(y.data(), y.size(), s);
  EXPECT_FLOAT_EQ(p.scale, 3.0f / 15);
  EXPECT_EQ(p.zero, 10);  // round(2 / 0.2)
  for (float v : y) {
    int q = quantize_level(v, p, s);
    EXPECT_GE(q, 0);
    EXPECT_LE(q, 15);
  }
  EXPECT_EQ(dequantize_level(quantize_level(0.0f, p, s), p), 0.0f);  // zero is exact
}

TEST(Quantizer, ClipRatioSaturatesTheLargest) {
  QuantSpec s;
  s.bits = 4;
  s.clip_ratio = 0.5f;
  std::vector<float> x = {-10.0f, 1.0f, 10.0f};
  fake_quant_ref(x.data(), 1, 3, s);
  float step = 5.0f / 7;
  EXPECT_FLOAT_EQ(x[2], 7 * step);   // saturates at qmax
  EXPECT_FLOAT_EQ(x[0], -8 * step);  // and at qmin
  EXPECT_FLOAT_EQ(x[1], std::nearbyint(1.0f / step) * step);
}

TEST(Quantizer, GroupsAreIndependentAndRowsToo) {
  QuantSpec g;
  g.bits = 4;
  g.gran = Granularity::PerGroup;
  g.group = 4;
  auto x = randn(3 * 16, 3);
  for (int i = 0; i < 4; i++) x[4 + i] *= 100;  // a loud group in row 0
  auto y = x;
  fake_quant_ref(y.data(), 3, 16, g);
  for (int r = 0; r < 3; r++)
    for (int c0 = 0; c0 < 16; c0 += 4) {
      std::vector<float> blk(x.begin() + r * 16 + c0, x.begin() + r * 16 + c0 + 4);
      fake_quant_ref(blk.data(), 1, 4, g);
      for (int i = 0; i < 4; i++) EXPECT_EQ(y[r * 16 + c0 + i], blk[i]);
    }
}

TEST(Quantizer, IdempotentAndBits16IsOff) {
  QuantSpec s;
  s.bits = 3;
  s.symmetric = false;
  auto x = randn(8 * 32, 4);
  fake_quant_ref(x.data(), 8, 32, s);
  auto y = x;
  fake_quant_ref(y.data(), 8, 32, s);
  // The scale is recomputed from dequantized values, so equal up to float rounding.
  for (size_t i = 0; i < x.size(); i++) EXPECT_NEAR(y[i], x[i], 1e-5f * (1 + std::fabs(x[i])));
  QuantSpec off;
  auto z = randn(10, 5), z0 = z;
  fake_quant_ref(z.data(), 1, 10, off);
  EXPECT_EQ(z, z0);
}

TEST(Quantizer, MseSearchNeverWorseThanMinMax) {
  QuantSpec s;
  s.bits = 4;
  QuantSpec m = s;
  m.mse_search = true;
  for (unsigned seed = 0; seed < 20; seed++) {
    auto x = randn(128, seed);
    x[seed] = 12.0f;  // an outlier makes clipping worthwhile
    auto a = x, b = x;
    fake_quant_ref(a.data(), 1, 128, s);
    fake_quant_ref(b.data(), 1, 128, m);
    double ea = 0, eb = 0;
    for (int i = 0; i < 128; i++) {
      ea += std::pow(std::fabs(a[i] - x[i]), 2.4);
      eb += std::pow(std::fabs(b[i] - x[i]), 2.4);
    }
    EXPECT_LE(eb, ea * (1 + 1e-6));
  }
}

// Rows the MSE clip search meets: Gaussian, with outliers, tiny, all zero, constant, and
// lengths that are not whole blocks of 16; every bit width and both zero-point modes.
std::vector<std::vector<float>> search_rows() {
  std::vector<std::vector<float>> rows;
  unsigned seed = 100;
  for (int n : {1, 7, 16, 37, 128, 300}) {
    rows.push_back(randn(n, seed++));
    auto o = randn(n, seed++);
    o[n / 2] = 25.0f;  // one outlier: clipping pays
    rows.push_back(o);
    auto t = randn(n, seed++, 1e-20f);  // tiny values: scales near the float floor
    rows.push_back(t);
    rows.push_back(std::vector<float>(n, 0.0f));
    rows.push_back(std::vector<float>(n, 0.75f));
  }
  return rows;
}

std::vector<QuantSpec> search_specs() {
  std::vector<QuantSpec> v;
  for (int bits : {2, 3, 4, 8})
    for (bool sym : {true, false})
      for (bool f16 : {false, true}) {
        QuantSpec s;
        s.bits = bits, s.symmetric = sym, s.mse_search = true, s.scale_f16 = f16;
        v.push_back(s);
      }
  return v;
}

// The search is vectorized per instruction set; all of them must choose the same bits, or a
// model quantized on one machine would differ from the same run on another.
TEST(Quantizer, MseSearchChoosesTheSameBitsOnEveryInstructionSet) {
  std::vector<SimdLevel> levels = {SimdLevel::Portable};
  if (best_simd_level() >= SimdLevel::Avx2) levels.push_back(SimdLevel::Avx2);
  if (best_simd_level() >= SimdLevel::Avx512) levels.push_back(SimdLevel::Avx512);
  if (levels.size() < 2) GTEST_SKIP() << "this CPU has one level only";
  int compared = 0;
  for (const QuantSpec& s : search_specs())
    for (const auto& x : search_rows()) {
      float lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
      double ea = 0, eb = 0;
      const QParams a = mse_clip_search(x.data(), (int64_t)x.size(), s, lo, hi, SimdLevel::Portable, &ea);
      for (SimdLevel l : levels) {
        const QParams b = mse_clip_search(x.data(), (int64_t)x.size(), s, lo, hi, l, &eb);
        ASSERT_EQ(std::memcmp(&a, &b, sizeof a), 0) << s.describe() << " n " << x.size() << " level " << (int)l;
        ASSERT_EQ(std::memcmp(&ea, &eb, sizeof ea), 0) << s.describe() << " n " << x.size() << " level " << (int)l;
        compared++;
      }
    }
  EXPECT_GT(compared, 500);
}

// Against an independent search in double precision (std::pow, sequential sum; terms below
// 2^-126 count as 0, as they do in the search and did with float powf): the chosen
// ratio's exact error is the minimum up to the float pow's 1e-6, and it is the same ratio
// except on near-ties.
TEST(Quantizer, MseSearchFindsTheExactMinimum) {
  int rows = 0, same = 0;
  for (const QuantSpec& s : search_specs())
    for (const auto& x : search_rows()) {
      const int64_t n = (int64_t)x.size();
      float lo = *std::min_element(x.begin(), x.end()), hi = *std::max_element(x.begin(), x.end());
      auto exact_err = [&](const QParams& p) {
        double e = 0;
        for (int64_t k = 0; k < n; k++) {
          const float d = std::fabs(dequantize_level(quantize_level(x[k], p, s), p) - x[k]);
          const double t = d == 0.0f ? 0.0 : std::pow((double)d, (double)s.mse_norm);
          e += t < 0x1p-126 ? 0.0 : t;  // below float's normal range a term counts as 0 (as powf's did)
        }
        return e;
      };
      double best = INFINITY;
      QParams want;
      for (int i = 0; i < (int)(s.mse_maxshrink * s.mse_grid); i++) {
        const QParams p = params_from_range(lo, hi, s, 1.0f - (float)i / s.mse_grid);
        const double e = exact_err(p);
        if (e < best) best = e, want = p;
      }
      const QParams got = mse_clip_search(x.data(), n, s, lo, hi);
      EXPECT_LE(exact_err(got), best * (1 + 1e-5) + 1e-300) << s.describe() << " n " << n;
      rows++;
      same += got.scale == want.scale && got.zero == want.zero;
    }
  EXPECT_GE(same, rows * 97 / 100) << same << " of " << rows;
}

TEST(Quantizer, ZeroShareCountsZeroLevels) {
  QuantSpec s;
  s.bits = 4;
  std::vector<float> x = {7.0f, 0.1f, -0.2f, 0.6f};  // scale 1: 0.1 and -0.2 -> 0; 0.6 -> 1
  EXPECT_DOUBLE_EQ(zero_share_ref(x.data(), 1, 4, s), 0.5);
}

TEST(Gptq, BeatsRtnOnLayerOutputError) {
  const int out = 48, in = 96, n = 2048;
  auto w = randn((size_t)out * in, 10, 0.1f);
  // correlated inputs with a few strong channels, as real activations have
  auto z = randn((size_t)n * in, 11);
  auto mix = randn((size_t)in * in, 12, 0.2f);
  std::vector<float> x((size_t)n * in);
  sgemm_nt(z.data(), mix.data(), x.data(), n, in, in);
  for (int i = 0; i < n; i++) x[(size_t)i * in + 5] *= 8;
  Hessian h(in, /*f64=*/true);
  h.add(x.data(), n);
  QuantSpec s;
  s.bits = 4;
  Linear a;
  a.w = Tensor({out, in});
  Linear b = a, ref = a;
  a.w.data = b.w.data = ref.w.data = w;
  rtn_quantize(a, s);
  gptq_quantize(b, h, s, GptqOptions{});
  auto err = [&](const Linear& q) {
    std::vector<float> y0((size_t)n * out), y1((size_t)n * out);
    sgemm_nt(x.data(), ref.w.ptr(), y0.data(), n, out, in);
    sgemm_nt(x.data(), q.w.ptr(), y1.data(), n, out, in);
    double e = 0;
    for (size_t i = 0; i < y0.size(); i++) e += (double)(y0[i] - y1[i]) * (y0[i] - y1[i]);
    return e;
  };
  double e_rtn = err(a), e_gptq = err(b);
  EXPECT_LT(e_gptq, 0.8 * e_rtn) << "rtn " << e_rtn << " gptq " << e_gptq;
  // GPTQ output is on the quantizer's grid: every row has at most 16 distinct values
  for (int r = 0; r < out; r++) {
    std::set<float> lv(b.w.data.begin() + r * in, b.w.data.begin() + (r + 1) * in);
    EXPECT_LE(lv.size(), 16u);
  }
  GptqOptions ao;
  ao.act_order = true;
  Linear c = ref;
  gptq_quantize(c, h, s, ao);
  EXPECT_LT(err(c), e_rtn);
}

TEST(Hadamard, FwhtEqualsDenseSylvester) {
  for (int n : {1, 2, 8, 16, 32, 64, 128, 256}) {
    // dense Sylvester: H[i][j] = (-1)^popcount(i & j)
    auto x = randn((size_t)3 * n, n);
    auto y = x;
    fwht_rows(y.data(), 3, n);
    for (int r = 0; r < 3; r++)
      for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < n; j++) s += (__builtin_popcount(i & j) % 2 ? -1.0 : 1.0) * x[(size_t)r * n + j];
        EXPECT_NEAR(y[(size_t)r * n + i], s, 1e-4 * (1 + std::fabs(s)));
      }
    // the vectorised butterflies are the textbook ones in the same order: the same bits
    auto z = x;
    for (int r = 0; r < 3; r++) {
      float* v = z.data() + (size_t)r * n;
      for (int h = 1; h < n; h <<= 1)
        for (int i = 0; i < n; i += 2 * h)
          for (int j = i; j < i + h; j++) {
            const float a = v[j], b = v[j + h];
            v[j] = a + b, v[j + h] = a - b;
          }
    }
    for (size_t i = 0; i < z.size(); i++) ASSERT_EQ(y[i], z[i]) << "n " << n << " value " << i;
  }
}

TEST(Hadamard, PaleyConstructionsAreHadamard) {
  // QuaRot's sizes that Paley I/II reach (27, 25, 343 need GF(p^k)), plus 44 (tinyllama 704 = 16*44).
  for (int m : {12, 20, 28, 36, 44, 52, 60, 108, 140, 344}) {
    auto h = paley_hadamard(m);
    ASSERT_EQ(h.size(), (size_t)m * m) << m;
    for (int i = 0; i < m; i++)
      for (int j = 0; j < m; j++) {
        int dot = 0;
        for (int k = 0; k < m; k++) dot += h[(size_t)i * m + k] * h[(size_t)j * m + k];
        ASSERT_EQ(dot, i == j ? m : 0) << "m=" << m << " i=" << i << " j=" << j;
      }
  }
  EXPECT_TRUE(paley_hadamard(172).empty());  // needs a Williamson table: falls back (documented)
  int p2, m;
  hadamard_factor(11008, &p2, &m);  // Llama-2-7B ffn
  EXPECT_EQ(p2 * m, 11008);
  EXPECT_EQ(m, 344);
  hadamard_factor(14336, &p2, &m);  // Llama-3-8B ffn
  EXPECT_EQ(m, 28);
  hadamard_factor(704, &p2, &m);
  EXPECT_EQ(m, 44);
}

TEST(Hadamard, RotationsAreOrthogonalAndInverse) {
  for (int n : {32, 64, 176, 704, 172, 48}) {
    for (bool signs : {false, true}) {
      Rotation r = Rotation::hadamard(n, signs, 7);
      EXPECT_EQ(r.kind(), n == 172 ? "random_orthogonal" : "hadamard") << n;
      Tensor q = r.matrix();
      double worst = 0;
      for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
          double d = 0;
          for (int k = 0; k < n; k++) d += (double)q.data[(size_t)i * n + k] * q.data[(size_t)j * n + k];
          worst = std::max(worst, std::fabs(d - (i == j)));
        }
      EXPECT_LT(worst, 1e-5) << n;
      auto x = randn((size_t)2 * n, 3), y = x;
      r.apply(y.data(), 2);
      r.apply_inverse(y.data(), 2);
      for (size_t i = 0; i < x.size(); i++) EXPECT_NEAR(y[i], x[i], 1e-5);
    }
  }
  // same seed, same bits
  EXPECT_EQ(Rotation::hadamard(64, true, 5).matrix().data, Rotation::hadamard(64, true, 5).matrix().data);
  EXPECT_NE(Rotation::hadamard(64, true, 5).matrix().data, Rotation::hadamard(64, true, 6).matrix().data);
  EXPECT_EQ(Rotation::random_orthogonal(40, 9).matrix().data, Rotation::random_orthogonal(40, 9).matrix().data);
}

// The fast path (FWHT + blocked H_m part) equals the Kronecker product written out:
// Q[i][j] = A[i / P][j / P] * B[i % P][j % P] / sqrt(n), A = Paley H_m, B = Sylvester H_P.
TEST(Hadamard, FastApplyEqualsExplicitKroneckerProduct) {
  for (int n : {176, 704, 48, 88, 1280, 1536, 384}) {  // the last three run the wide AVX-512 blocks
    int P, m;
    hadamard_factor(n, &P, &m);
    ASSERT_GT(m, 1) << n;
    if (n >= 1280) {
      EXPECT_EQ(P % 32, 0) << n;
    }
    const std::vector<int8_t> A = m > 2 ? paley_hadamard(m) : std::vector<int8_t>{1, 1, 1, -1};
    ASSERT_EQ(A.size(), (size_t)m * m) << n;
    Tensor q = Rotation::hadamard(n, false, 0).matrix();
    double worst = 0;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        const int sylvester = __builtin_popcount((i % P) & (j % P)) % 2 ? -1 : 1;
        const double want = A[(size_t)(i / P) * m + j / P] * sylvester / std::sqrt((double)n);
        worst = std::max(worst, std::fabs(q.data[(size_t)i * n + j] - want));
      }
    EXPECT_LT(worst, 1e-6) << n;
  }
}

TEST(Recipe, JsonRoundTrip) {
  Recipe r;
  r.method = "quarot";
  r.weight_algo = "gptq";
  r.set_bits(4, 8, 4, 32);
  r.w.gran = Granularity::PerGroup;
  r.w.group = 64;
  r.r1 = r.r3 = true;
  r.seed = 42;
  r.r3_kind = "random_orthogonal";
  r.r3_seed = 45;
  r.nsamples = 7;
  Recipe b = Recipe::from_json(r.to_json(), "x");
  EXPECT_EQ(b.to_json(), r.to_json());
  EXPECT_EQ(b.w.group, 64);
  EXPECT_EQ(b.a.bits, 8);
  EXPECT_FALSE(b.k.symmetric);
  EXPECT_FLOAT_EQ(b.k.clip_ratio, 0.95f);
  EXPECT_TRUE(b.r3 && !b.r2);
  EXPECT_THROW(Recipe::from_json("{\"format\":\"x\"}", "x"), Error);
}

}  // namespace
}  // namespace kt
