// GPTQ against an independent reference: the OBS-style algorithm GPTQ is derived from (Frantar et
// al. 2022, eq. 2-3), which keeps the explicit inverse Hessian, removes each quantized column's
// row and column from it, and spreads the error over every later column at once. GPTQ's
// Cholesky form with lazy blocks computes the same numbers in another order, so the codes agree
// except where a value lies within rounding of a quantization threshold.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <type_traits>

#include "core/quantizer.h"
#include "kernels/gemm.h"
#include "quant/gptq.h"
#include "test_util.h"

namespace kt {
namespace {

using test::randn;

// Gauss-Jordan inverse with partial pivoting (n small).
std::vector<double> inverse(std::vector<double> a, int n) {
  std::vector<double> inv((size_t)n * n, 0.0);
  for (int i = 0; i < n; i++) inv[(size_t)i * n + i] = 1;
  for (int c = 0; c < n; c++) {
    int p = c;
    for (int r = c + 1; r < n; r++)
      if (std::fabs(a[(size_t)r * n + c]) > std::fabs(a[(size_t)p * n + c])) p = r;
    for (int j = 0; j < n; j++) std::swap(a[(size_t)c * n + j], a[(size_t)p * n + j]), std::swap(inv[(size_t)c * n + j], inv[(size_t)p * n + j]);
    const double d = a[(size_t)c * n + c];
    for (int j = 0; j < n; j++) a[(size_t)c * n + j] /= d, inv[(size_t)c * n + j] /= d;
    for (int r = 0; r < n; r++) {
      if (r == c) continue;
      const double f = a[(size_t)r * n + c];
      for (int j = 0; j < n; j++) a[(size_t)r * n + j] -= f * a[(size_t)c * n + j], inv[(size_t)r * n + j] -= f * inv[(size_t)c * n + j];
    }
  }
  return inv;
}

// OBS-order GPTQ on per-row params found from the full rows (per-channel spec, no act order).
// H: the mean X^T X [cols, cols].
std::vector<float> gptq_obs_reference(const std::vector<float>& w, int rows, int cols, std::vector<double> H,
                                      const QuantSpec& ws, double percdamp) {
  std::vector<float> w0 = w;
  for (int c = 0; c < cols; c++)  // dead inputs: H_cc = 1, the column zero (as GPTQ's reference code)
    if (H[(size_t)c * cols + c] == 0) {
      H[(size_t)c * cols + c] = 1;
      for (int r = 0; r < rows; r++) w0[(size_t)r * cols + c] = 0;
    }
  double mean = 0;
  for (int i = 0; i < cols; i++) mean += H[(size_t)i * cols + i];
  for (int i = 0; i < cols; i++) H[(size_t)i * cols + i] += percdamp * mean / cols;
  std::vector<double> Hi = inverse(H, cols);
  std::vector<double> W(w0.begin(), w0.end());
  std::vector<QParams> p(rows);
  for (int r = 0; r < rows; r++) p[r] = find_params_ref(&w0[(size_t)r * cols], cols, ws);
  std::vector<float> Q(w.size());
  for (int c = 0; c < cols; c++) {
    const double d = Hi[(size_t)c * cols + c];
    for (int r = 0; r < rows; r++) {
      const double wv = W[(size_t)r * cols + c];
      const float q = dequantize_level(quantize_level((float)wv, p[r], ws), p[r]);
      Q[(size_t)r * cols + c] = q;
      const double e = (wv - q) / d;
      for (int j = c + 1; j < cols; j++) W[(size_t)r * cols + j] -= e * Hi[(size_t)c * cols + j];
    }
    // drop column c from the inverse Hessian of the remaining columns
    for (int i = c + 1; i < cols; i++)
      for (int j = c + 1; j < cols; j++)
        Hi[(size_t)i * cols + j] -= Hi[(size_t)i * cols + c] * Hi[(size_t)c * cols + j] / d;
  }
  return Q;
}
std::vector<float> gptq_obs_reference(const std::vector<float>& w, int rows, int cols, const Hessian& hs,
                                      const QuantSpec& ws, double percdamp) {
  std::vector<double> H(hs.data());
  for (auto& v : H) v /= (double)hs.samples();
  return gptq_obs_reference(w, rows, cols, std::move(H), ws, percdamp);
}

struct Problem {
  int out, in = 200, n = 1024;
  std::vector<float> w, x;
  Hessian h{200, true}, h32{200, false};  // the same sums in double and in float
  explicit Problem(int rows = 40) : out(rows) {
    w = randn((size_t)out * in, 21, 0.1f);
    auto z = randn((size_t)n * in, 22);
    auto mix = randn((size_t)in * in, 23, 0.15f);
    x.resize((size_t)n * in);
    sgemm(false, true, n, in, in, 1.0f, z.data(), in, mix.data(), in, 0.0f, x.data(), in);
    for (int i = 0; i < n; i++) x[(size_t)i * in + 7] *= 6;  // one strong channel
    for (int i = 0; i < n; i++) x[(size_t)i * in + 11] = 0;  // one dead input
    h.add(x.data(), n);
    h32.add(x.data(), n);
  }
};

TEST(Gptq, EqualsTheObsFormulationWithTheExplicitInverse) {
  Problem P;
  QuantSpec s;
  s.bits = 4;
  const std::vector<float> want = gptq_obs_reference(P.w, P.out, P.in, P.h, s, 0.01);
  for (const Hessian* h : {&P.h, &P.h32})        // GPTQ in double and in float (the reference's)
  for (int block : {32, 128, 1000}) {  // several blocks with a remainder, and one block
    SCOPED_TRACE(h->f64() ? "f64" : "f32");
    Linear l;
    l.w = Tensor({P.out, P.in});
    l.w.data = P.w;
    GptqOptions o;
    o.block = block;
    gptq_quantize(l, *h, s, o);
    ASSERT_EQ(gptq_factor(*h, o).U32.empty(), h->f64()) << "factored in the Hessian's precision";
    int same = 0;
    double max_diff = 0;
    for (size_t i = 0; i < want.size(); i++) {
      same += l.w.data[i] == want[i];
      max_diff = std::max(max_diff, (double)std::fabs(l.w.data[i] - want[i]));
    }
    EXPECT_GE(same, (int)want.size() * 995 / 1000) << "block " << block;
    // where a code differs it is by one level near a threshold, never a far value
    EXPECT_LE(max_diff, 0.1 * 4 / 7 + 1e-6) << "block " << block;
    for (int r = 0; r < P.out; r++) EXPECT_EQ(l.w.data[(size_t)r * P.in + 11], 0.0f) << "dead input, row " << r;
  }
}

TEST(Gptq, InverseUpperCholeskyFactorsTheInverse) {
  Problem P;
  const int n = P.in;
  std::vector<double> H(P.h.data());
  for (int i = 0; i < n; i++) H[(size_t)i * n + i] += 1e-3;  // the dead input
  std::vector<double> U = H;
  ASSERT_TRUE(inverse_upper_cholesky(U.data(), n));
  // U upper with a positive diagonal, and U^T U H = I
  double worst = 0;
  for (int i = 0; i < n; i++) {
    EXPECT_GT(U[(size_t)i * n + i], 0);
    for (int j = 0; j < i; j++) ASSERT_EQ(U[(size_t)i * n + j], 0.0);
  }
  std::vector<double> UtU((size_t)n * n), P2((size_t)n * n);
  dgemm(true, false, n, n, n, 1.0, U.data(), n, U.data(), n, 0.0, UtU.data(), n);
  dgemm(false, false, n, n, n, 1.0, UtU.data(), n, H.data(), n, 0.0, P2.data(), n);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) worst = std::max(worst, std::fabs(P2[(size_t)i * n + j] - (i == j ? 1.0 : 0.0)));
  EXPECT_LT(worst, 1e-8);
  std::vector<double> notpd((size_t)4, 0.0);
  notpd[0] = 1, notpd[3] = -1;
  EXPECT_FALSE(inverse_upper_cholesky(notpd.data(), 2));
}

// Larger than one 256-block (the factorisation's blocks, a short last one), in T: U^T U H = I
// to within `tol` (checked in double) with U upper and a positive diagonal (which fixes U: the
// Cholesky factor is unique), the same bits for one and two threads, and a matrix that is not
// positive definite in a later block refused.
template <typename T>
void check_blocked_inverse_upper_cholesky(double tol) {
  const int n = 600, m = 900;
  auto z = randn((size_t)m * n, 31);
  std::vector<T> x(z.begin(), z.end()), H((size_t)n * n);
  if constexpr (std::is_same_v<T, double>)
    dgemm(true, false, n, n, m, 1.0 / m, x.data(), n, x.data(), n, 0.0, H.data(), n);
  else
    sgemm(true, false, n, n, m, 1.0f / m, x.data(), n, x.data(), n, 0.0f, H.data(), n);
  for (int i = 0; i < n; i++) H[(size_t)i * n + i] += T(0.05);
  std::vector<T> U[2];
  for (int t : {1, 2}) {
    omp_set_num_threads(t);
    U[t - 1] = H;
    ASSERT_TRUE(inverse_upper_cholesky(U[t - 1].data(), n));
  }
  omp_set_num_threads(omp_get_num_procs());
  EXPECT_TRUE(U[0] == U[1]) << "bits differ between 1 and 2 threads";
  for (int i = 0; i < n; i++) {
    EXPECT_GT(U[0][(size_t)i * n + i], 0);
    for (int j = 0; j < i; j++) ASSERT_EQ(U[0][(size_t)i * n + j], T(0));
  }
  std::vector<double> Ud(U[0].begin(), U[0].end()), Hd(H.begin(), H.end()), UtU((size_t)n * n), P((size_t)n * n);
  dgemm(true, false, n, n, n, 1.0, Ud.data(), n, Ud.data(), n, 0.0, UtU.data(), n);
  dgemm(false, false, n, n, n, 1.0, UtU.data(), n, Hd.data(), n, 0.0, P.data(), n);
  double worst = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) worst = std::max(worst, std::fabs(P[(size_t)i * n + j] - (i == j ? 1.0 : 0.0)));
  EXPECT_LT(worst, tol);
  if (std::is_same_v<T, float>) {
    EXPECT_GT(worst, 1e-9) << "float arithmetic should show";
  }
  std::vector<T> bad = H;
  bad[(size_t)50 * n + 50] = -1;  // index-reversed: row 549, the third block
  EXPECT_FALSE(inverse_upper_cholesky(bad.data(), n));
}

TEST(Gptq, BlockedInverseUpperCholeskyAcrossBlocksAndThreads) { check_blocked_inverse_upper_cholesky<double>(1e-9); }

// The float factorisation (--gptq-precision f32) by the same blocks, to float accuracy.
TEST(Gptq, BlockedInverseUpperCholeskyInFloat) { check_blocked_inverse_upper_cholesky<float>(1e-4); }

// The Hessian's sums through accumulate_gram: the upper tiles of sgemm's X^T X only, mirrored,
// bit for bit what the full product gives (sizes that leave short tiles both ways).
TEST(Gptq, GramAccumulationIsTheFullProductsUpperTriangleMirrored) {
  for (int n : {1, 70, 300}) {
    const int rows = 97;
    auto x = randn((size_t)rows * n, 41);
    std::vector<float> c((size_t)n * n);
    sgemm(true, false, n, n, rows, 1.0f, x.data(), n, x.data(), n, 0.0f, c.data(), n);
    std::vector<double> want((size_t)n * n, 0.5), got((size_t)n * n, 0.5);  // added to what is there
    for (int i = 0; i < n; i++)
      for (int j = i; j < n; j++) {
        want[(size_t)i * n + j] += c[(size_t)i * n + j];
        if (j != i) want[(size_t)j * n + i] += c[(size_t)i * n + j];
      }
    accumulate_gram(x.data(), rows, n, got.data());
    EXPECT_TRUE(got == want) << "n " << n;
    std::vector<float> want32((size_t)n * n, 0.5f), got32((size_t)n * n, 0.5f);  // in float (f32 GPTQ)
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) want32[(size_t)i * n + j] += c[(size_t)std::min(i, j) * n + std::max(i, j)];
    accumulate_gram(x.data(), rows, n, got32.data());
    EXPECT_TRUE(got32 == want32) << "f32, n " << n;
  }
}

// act_order: the factor is that of H with rows and columns in decreasing-diagonal order
// (permuted in place now), bit for bit the factor of the permutation written out.
TEST(Gptq, ActOrderFactorsTheExplicitlyPermutedHessian) {
  Problem P;
  const int n = P.in;
  GptqOptions ao;
  ao.act_order = true;
  const GptqFactor f = gptq_factor(P.h, ao);
  std::vector<double> H = P.h.data();
  for (double& v : H) v *= 1.0 / (double)P.h.samples();
  H[(size_t)11 * n + 11] = 1;  // the dead input
  std::vector<int64_t> perm(n);
  for (int i = 0; i < n; i++) perm[i] = i;
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return H[a * n + a] > H[b * n + b]; });
  ASSERT_EQ(f.perm, perm);
  EXPECT_NE(perm[0], 0);  // a real reordering (channel 7 is the strong one)
  std::vector<double> Hp((size_t)n * n);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) Hp[(size_t)i * n + j] = H[perm[i] * n + perm[j]];
  double mean = 0;
  for (int i = 0; i < n; i++) mean += Hp[(size_t)i * n + i];
  mean /= n;
  for (int i = 0; i < n; i++) Hp[(size_t)i * n + i] += 0.01 * mean;
  ASSERT_TRUE(inverse_upper_cholesky(Hp.data(), n));
  EXPECT_TRUE(f.U == Hp);
}

// Act order: the same as the reference run on the columns (and the Hessian) explicitly put in
// the factor's order, the codes then put back; in both precisions, blocks with a remainder.
TEST(Gptq, ActOrderQuantizesLikeTheReferenceOnPermutedColumns) {
  Problem P(48);
  const int n = P.in;
  QuantSpec s;
  s.bits = 4;
  GptqOptions ao;
  ao.act_order = true;
  ao.block = 64;
  const std::vector<int64_t> perm = gptq_factor(P.h, ao).perm;  // the order (checked above)
  std::vector<double> H = P.h.data(), Hp((size_t)n * n);
  for (double& v : H) v *= 1.0 / (double)P.h.samples();
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) Hp[(size_t)i * n + j] = H[perm[i] * n + perm[j]];
  std::vector<float> wp(P.w.size());
  for (int r = 0; r < P.out; r++)
    for (int i = 0; i < n; i++) wp[(size_t)r * n + i] = P.w[(size_t)r * n + perm[i]];
  const std::vector<float> qp = gptq_obs_reference(wp, P.out, n, Hp, s, 0.01);
  std::vector<float> want(qp.size());
  for (int r = 0; r < P.out; r++)
    for (int i = 0; i < n; i++) want[(size_t)r * n + perm[i]] = qp[(size_t)r * n + i];
  for (const Hessian* h : {&P.h, &P.h32}) {
    SCOPED_TRACE(h->f64() ? "f64" : "f32");
    Linear l;
    l.w = Tensor({P.out, n});
    l.w.data = P.w;
    gptq_quantize(l, *h, s, ao);
    int same = 0;
    for (size_t i = 0; i < want.size(); i++) same += l.w.data[i] == want[i];
    EXPECT_GE(same, (int)want.size() * 995 / 1000);
    for (int r = 0; r < P.out; r++) EXPECT_EQ(l.w.data[(size_t)r * n + 11], 0.0f) << "dead input, row " << r;
  }
}

TEST(Gptq, SameBitsForOneAndTwoThreads) {
  Problem P(600);  // several row ranges and several dgemm tiles per block update
  QuantSpec s;
  s.bits = 4;
  s.gran = Granularity::PerGroup;
  s.group = 40;
  for (const Hessian* h : {&P.h, &P.h32}) {
    std::vector<float> got[2];
    std::vector<float> scales[2];
    for (int t : {1, 2}) {
      omp_set_num_threads(t);
      Linear l;
      l.w = Tensor({P.out, P.in});
      l.w.data = P.w;
      gptq_quantize(l, *h, s, GptqOptions{});
      got[t - 1] = l.w.data;
      scales[t - 1] = l.qscale.data;
    }
    omp_set_num_threads(omp_get_num_procs());
    EXPECT_EQ(got[0], got[1]) << (h->f64() ? "f64" : "f32");
    EXPECT_EQ(scales[0], scales[1]);
    EXPECT_EQ(scales[0].size(), (size_t)P.out * (P.in / 40));
  }
}

}  // namespace
}  // namespace kt
