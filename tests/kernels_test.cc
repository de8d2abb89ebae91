// Integer GEMM kernels against a plain reference (bit-exact int32 accumulators) for every
// kernel this CPU supports, odd shapes, per-channel and grouped Q4 and Q6, and Q8.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/quantizer.h"
#include "kernels/packed.h"

namespace kt {
namespace {

struct Case {
  QType t;
  int M, N, K, group;
};

std::vector<Kernel> kernels() {
  std::vector<Kernel> v;
  for (Kernel k : {Kernel::Scalar, Kernel::Avx2, Kernel::Vnni, Kernel::Amx})
    if (kernel_supported(k)) v.push_back(k);
  return v;
}

// The largest sums a Q4 group can make: every weight +7 (code 15) against every activation
// -128, over one group of 128k codes, one and two rows (M = 1 and 2 take the VNNI kernel's
// smallest register blocks): the sum of the unsigned nibble products (15 x -128 x K, -2.5e8)
// and its zero-point correction must come out exact in int32 from every kernel.
TEST(Kernels, Q4ExtremeSumsOverTheLongestGroupsAreExact) {
  for (int K : {131072, 131080})
    for (int M : {1, 2}) {
      const int N = 16, Kp = (K + 7) / 8 * 8;
      std::vector<int8_t> w((size_t)N * K, 7);
      std::vector<float> sc(N, 0.01f);
      const PackedWeight p = pack_weights_ref(QType::Q4, w.data(), N, K, 0, sc.data());
      QuantizedActs a;
      a.M = M;
      a.K = K;
      a.Kp = Kp;
      a.q.assign((size_t)M * Kp, 0);
      for (int m = 0; m < M; m++) std::fill_n(a.q.begin() + (size_t)m * Kp, K, (int8_t)-128);
      a.scale.assign(M, 1.0f);
      a.gsum.assign(M, -128 * K);
      for (Kernel k : kernels()) {
        std::vector<int32_t> got((size_t)M * p.Np, 12345);
        gemm_acc(k, a, p, got.data());
        for (int m = 0; m < M; m++)
          for (int n = 0; n < N; n++)
            ASSERT_EQ(got[(size_t)m * p.Np + n], -896 * K) << kernel_name(k) << " M=" << M << " K=" << K;
      }
    }
}

TEST(Kernels, AllKernelsMatchPlainReferenceBitExactly) {
  std::mt19937 g(1);
  const Case cases[] = {{QType::Q4, 1, 16, 8, 0},    {QType::Q4, 5, 37, 200, 0}, {QType::Q4, 7, 64, 256, 64},
                        {QType::Q4, 9, 33, 704, 32}, {QType::Q8, 3, 21, 96, 0},  {QType::Q8, 6, 48, 256, 128},
                        {QType::Q4, 1, 256, 704, 0}, {QType::Q4, 13, 80, 64, 0},  {QType::Q8, 12, 96, 32, 0},
                        {QType::Q4, 6, 48, 128, 32}, {QType::Q4, 10, 64, 96, 0},   {QType::Q6, 1, 48, 200, 0},
                        {QType::Q6, 7, 100, 256, 64}, {QType::Q6, 13, 37, 96, 32}, {QType::Q6, 1, 33, 2048, 0}};
  for (const Case& c : cases) {
    const int lo = wtype_traits(c.t).qmin, hi = wtype_traits(c.t).qmax;
    std::uniform_int_distribution<int> wd(lo, hi), xd(-128, 127);
    std::vector<int8_t> w((size_t)c.N * c.K);
    for (auto& v : w) v = (int8_t)wd(g);
    const int Kp = (c.K + 7) / 8 * 8, grp = c.group > 0 ? c.group : Kp, G = Kp / grp;
    std::vector<float> sc((size_t)c.N * G, 0.01f);
    PackedWeight p = pack_weights_ref(c.t, w.data(), c.N, c.K, c.group, sc.data());
    std::vector<int8_t> back((size_t)c.N * c.K);
    unpack_weights_ref(p, back.data());
    ASSERT_EQ(back, w);
    QuantizedActs a;
    a.M = c.M;
    a.K = c.K;
    a.Kp = Kp;
    a.q.assign((size_t)c.M * Kp, 0);
    a.scale.assign(c.M, 1.0f);
    a.gsum.assign((size_t)c.M * G, 0);
    for (int m = 0; m < c.M; m++)
      for (int k = 0; k < c.K; k++) {
        a.q[(size_t)m * Kp + k] = (int8_t)xd(g);
        a.gsum[(size_t)m * G + k / grp] += a.q[(size_t)m * Kp + k];
      }
    // plain reference from the unpacked arrays
    std::vector<int32_t> want((size_t)c.M * p.Np * G, 0);
    for (int m = 0; m < c.M; m++)
      for (int n = 0; n < c.N; n++)
        for (int k = 0; k < c.K; k++)
          want[((size_t)m * p.Np + n) * G + k / grp] += (int32_t)a.q[(size_t)m * Kp + k] * w[(size_t)n * c.K + k];
    for (Kernel k : kernels()) {
      std::vector<int32_t> got(want.size(), 12345);
      gemm_acc(k, a, p, got.data());
      for (int m = 0; m < c.M; m++)
        for (int n = 0; n < c.N; n++)
          for (int gg = 0; gg < G; gg++)
            ASSERT_EQ(got[((size_t)m * p.Np + n) * G + gg], want[((size_t)m * p.Np + n) * G + gg])
                << kernel_name(k) << " M=" << c.M << " N=" << c.N << " K=" << c.K << " m=" << m << " n=" << n;
    }
  }
  EXPECT_GE(kernels().size(), 1u);
}

TEST(Kernels, ActivationCodesReproduceFakeQuantization) {
  std::mt19937 g(2);
  std::normal_distribution<float> nd;
  const int M = 7, K = 100;
  std::vector<float> x((size_t)M * K);
  for (auto& v : x) v = nd(g);
  for (int bits : {8, 6, 4, 2}) {  // every width the kernels take (runtime/real_model.cc)
    QuantizedActs a;
    quantize_acts_ref(x.data(), M, K, 104, bits, 0.9f, 0, &a);
    QuantSpec s;
    s.bits = bits;
    s.clip_ratio = 0.9f;
    auto fq = x;
    fake_quant_ref(fq.data(), M, K, s);
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++) ASSERT_EQ(a.q[(size_t)m * 104 + k] * a.scale[m], fq[(size_t)m * K + k]);
  }
}

TEST(Kernels, FloatEpilogueEqualsDequantizedProduct) {
  std::mt19937 g(3);
  std::uniform_int_distribution<int> wd(-8, 7);
  std::normal_distribution<float> nd;
  const int M = 4, N = 20, K = 64;
  std::vector<int8_t> w((size_t)N * K);
  for (auto& v : w) v = (int8_t)wd(g);
  std::vector<float> sc(N);
  for (auto& s : sc) s = 0.01f + 0.001f * (float)wd(g);
  PackedWeight p = pack_weights_ref(QType::Q4, w.data(), N, K, 0, sc.data());
  std::vector<float> x((size_t)M * K);
  for (auto& v : x) v = nd(g);
  QuantizedActs a;
  quantize_acts_ref(x.data(), M, K, K, 8, 1.0f, 0, &a);
  std::vector<float> y((size_t)M * N);
  gemm_q(active_kernel(), a, p, nullptr, y.data());
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double ref = 0;
      for (int k = 0; k < K; k++) ref += (double)a.q[m * K + k] * a.scale[m] * w[n * K + k] * sc[n];
      EXPECT_NEAR(y[m * N + n], ref, 1e-4 * (1 + std::fabs(ref)));
    }
}

// The AVX-512 and AVX2 activation quantizers must give the reference's codes, scales and group
// sums bit for bit, also for NaN / Inf / all-zero rows and K that is not a multiple of 16.
TEST(Kernels, FastActivationQuantizersMatchReferenceBitExactly) {
  std::mt19937 g(4);
  std::normal_distribution<float> nd;
  struct C { int M, K, group, bits; float clip; };
  for (C c : {C{5, 100, 0, 8, 1.0f}, C{9, 256, 64, 4, 0.9f}, C{3, 37, 0, 4, 1.0f}, C{4, 704, 32, 8, 0.95f},
              C{2, 16, 8, 4, 1.0f}}) {
    const int Kp = (c.K + 7) / 8 * 8;
    if (c.group && Kp % c.group) continue;
    std::vector<float> x((size_t)c.M * c.K);
    for (auto& v : x) v = nd(g) * (1 + 20 * (g() % 50 == 0));  // a few outliers
    x[3] = NAN;                                                 // row 0: NaN is skipped in absmax, coded 0
    if (c.M > 1) x[(size_t)c.K + 1] = INFINITY;                 // row 1: Inf absmax -> scale Inf
    if (c.M > 2) std::fill(x.begin() + 2 * c.K, x.begin() + 3 * c.K, 0.0f);  // row 2: all zero
    if (c.M > 3) {  // row 3: values at or next to rounding ties, where x / s and x * (1 / s) differ
      float* r = &x[(size_t)3 * c.K];
      const int qmax = (1 << (c.bits - 1)) - 1;
      r[0] = 3.3f;
      const float s = 3.3f * c.clip / qmax;
      for (int k = 1; k < c.K; k++) r[k] = ((float)(k % (2 * qmax) - qmax) + 0.5f) * s;
    }
    QuantizedActs want;
    quantize_acts_ref(x.data(), c.M, c.K, Kp, c.bits, c.clip, c.group, &want);
    for (Kernel k : kernels()) {  // AVX-512 for vnni, AVX2 for avx2, the reference for scalar
      QuantizedActs got;
      quantize_acts(k, x.data(), c.M, c.K, Kp, c.bits, c.clip, c.group, &got);
      EXPECT_EQ(got.q, want.q) << kernel_name(k) << " K=" << c.K << " bits=" << c.bits;
      EXPECT_EQ(got.gsum, want.gsum) << kernel_name(k) << " K=" << c.K;
      for (int m = 0; m < c.M; m++)
        EXPECT_EQ(std::memcmp(&got.scale[m], &want.scale[m], 4), 0) << kernel_name(k) << " row " << m;
    }
  }
}

// A row transform given to quantize_acts acts like transforming x first, and x is left alone.
TEST(Kernels, RowTransformIsAppliedBeforeQuantizing) {
  struct Reverse : RowTransform {  // any per-row linear map will do: reverse and scale by 2
    int64_t n;
    explicit Reverse(int64_t n) : n(n) {}
    int64_t size() const override { return n; }
    void apply_row(float* r) const override {
      std::reverse(r, r + n);
      for (int64_t i = 0; i < n; i++) r[i] *= 2;
    }
  };
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  const int M = 6, K = 72;
  std::vector<float> x((size_t)M * K);
  for (auto& v : x) v = nd(g);
  const auto x0 = x;
  Reverse rev(K);
  auto xt = x;
  for (int m = 0; m < M; m++) rev.apply_row(&xt[(size_t)m * K]);
  QuantizedActs want;
  quantize_acts_ref(xt.data(), M, K, K, 4, 1.0f, 0, &want);
  for (Kernel k : kernels()) {
    QuantizedActs got;
    quantize_acts(k, x.data(), M, K, K, 4, 1.0f, 0, &got, &rev);
    EXPECT_EQ(got.q, want.q) << kernel_name(k);
    EXPECT_EQ(got.scale, want.scale) << kernel_name(k);
    EXPECT_EQ(x, x0) << "the input must not be modified";
  }
  Reverse wrong(K + 1);
  QuantizedActs a;
  EXPECT_THROW(quantize_acts(Kernel::Scalar, x.data(), M, K, K, 4, 1.0f, 0, &a, &wrong), std::exception);
}

// The VNNI kernel applies the float epilogue in registers; it must agree with the reference
// epilogue over the scalar kernel's int32 sums (grouped and per-channel, Q4 and Q8, bias,
// N not a multiple of 16, row counts that leave every remainder block).
TEST(Kernels, FusedEpilogueMatchesReferenceEpilogue) {
  if (!kernel_supported(Kernel::Vnni)) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  std::mt19937 g(6);
  std::normal_distribution<float> nd;
  const Case cases[] = {{QType::Q4, 13, 80, 256, 0}, {QType::Q4, 7, 37, 512, 64}, {QType::Q8, 11, 100, 384, 128},
                        {QType::Q8, 1, 48, 64, 0},    {QType::Q4, 20, 130, 128, 32}, {QType::Q6, 1, 70, 256, 0},
                        {QType::Q6, 12, 48, 384, 128}};
  for (const Case& c : cases) {
    const int lo = wtype_traits(c.t).qmin, hi = wtype_traits(c.t).qmax;
    std::uniform_int_distribution<int> wd(lo, hi);
    std::vector<int8_t> w((size_t)c.N * c.K);
    for (auto& v : w) v = (int8_t)wd(g);
    const int Kp = (c.K + 7) / 8 * 8, G = c.group > 0 ? Kp / c.group : 1;
    std::vector<float> sc((size_t)c.N * G), bias(c.N), x((size_t)c.M * c.K);
    for (auto& v : sc) v = 0.01f * (1 + std::fabs(nd(g)));
    for (auto& v : bias) v = nd(g);
    for (auto& v : x) v = nd(g);
    PackedWeight p = pack_weights_ref(c.t, w.data(), c.N, c.K, c.group, sc.data());
    QuantizedActs a;
    quantize_acts_ref(x.data(), c.M, c.K, Kp, 8, 1.0f, c.group, &a);
    std::vector<int32_t> acc((size_t)c.M * p.Np * G);
    gemm_acc(Kernel::Scalar, a, p, acc.data());
    std::vector<float> want((size_t)c.M * c.N), got(want.size(), NAN);
    gemm_epilogue_ref(a, p, acc.data(), bias.data(), want.data());
    gemm_q(Kernel::Vnni, a, p, bias.data(), got.data());
    for (size_t i = 0; i < want.size(); i++)
      ASSERT_NEAR(got[i], want[i], 1e-5f * (1 + std::fabs(want[i]))) << "M=" << c.M << " N=" << c.N << " i=" << i;
  }
}

// The AMX tile GEMM gives the VNNI kernel's floats bit for bit: both take exact int32 dot
// products and apply the same float operations in the same order. Cases cover row counts below,
// at and past the 32-row block (padded tails), an odd number of 16-column tiles, N not a multiple
// of 16, per-channel and grouped scales, 4- and 8-bit activations, Q8 weights, bias, and a K long
// enough that the columns are split over several panels.
TEST(Kernels, AmxTileGemmEqualsVnniBitForBit) {
  if (!kernel_supported(Kernel::Amx)) GTEST_SKIP() << "no AMX-INT8 on this CPU (or the OS did not grant it)";
  std::mt19937 g(9);
  std::normal_distribution<float> nd;
  struct AmxCase {
    QType t;
    int M, N, K, group, abits;
    bool bias;
  };
  const AmxCase cases[] = {{QType::Q4, 16, 48, 256, 0, 4, false},   {QType::Q4, 33, 100, 704, 64, 8, true},
                           {QType::Q4, 77, 130, 512, 128, 4, true}, {QType::Q8, 40, 64, 384, 128, 8, true},
                           {QType::Q8, 32, 17, 192, 0, 8, false},   {QType::Q4, 45, 100, 11008, 0, 4, true},
                           {QType::Q4, 20, 1100, 1024, 0, 8, false}};
  for (const AmxCase& c : cases) {
    const int lo = wtype_traits(c.t).qmin, hi = wtype_traits(c.t).qmax;
    std::uniform_int_distribution<int> wd(lo, hi);
    std::vector<int8_t> w((size_t)c.N * c.K);
    for (auto& v : w) v = (int8_t)wd(g);
    const int G = c.group > 0 ? c.K / c.group : 1;
    std::vector<float> sc((size_t)c.N * G), bias(c.N), x((size_t)c.M * c.K);
    for (auto& v : sc) v = 0.01f * (1 + std::fabs(nd(g)));
    for (auto& v : bias) v = nd(g);
    for (auto& v : x) v = nd(g) * (g() % 50 == 0 ? 20.0f : 1.0f);
    PackedWeight p = pack_weights_ref(c.t, w.data(), c.N, c.K, c.group, sc.data());
    QuantizedActs a;
    quantize_acts(Kernel::Vnni, x.data(), c.M, c.K, p.Kp, c.abits, 1.0f, c.group, &a);
    ASSERT_TRUE(amx_fits(a, p)) << "M=" << c.M << " K=" << c.K;
    std::vector<float> want((size_t)c.M * c.N, NAN), got(want.size(), NAN);
    gemm_q(Kernel::Vnni, a, p, c.bias ? bias.data() : nullptr, want.data());
    gemm_q(Kernel::Amx, a, p, c.bias ? bias.data() : nullptr, got.data());
    for (size_t i = 0; i < want.size(); i++)
      ASSERT_EQ(std::memcmp(&got[i], &want[i], 4), 0)
          << "M=" << c.M << " N=" << c.N << " K=" << c.K << " i=" << i << ": " << got[i] << " vs " << want[i];
  }
  // below 16 rows, or K tiles that would straddle groups of 32, the VNNI kernel runs
  QuantizedActs a;
  std::vector<float> x(8 * 64, 0.5f);
  quantize_acts(Kernel::Vnni, x.data(), 8, 64, 64, 8, 1.0f, 0, &a);
  std::vector<int8_t> w(16 * 64, 1);
  std::vector<float> sc(16, 1.0f), sc2(32, 1.0f);
  EXPECT_FALSE(amx_fits(a, pack_weights_ref(QType::Q4, w.data(), 16, 64, 0, sc.data())));
  std::vector<float> x2(16 * 64, 0.5f);
  quantize_acts(Kernel::Vnni, x2.data(), 16, 64, 64, 8, 1.0f, 32, &a);
  EXPECT_FALSE(amx_fits(a, pack_weights_ref(QType::Q4, w.data(), 16, 64, 32, sc2.data())));
  // Q6 has no B-tile unpacker: the VNNI kernel runs it at any row count
  quantize_acts(Kernel::Vnni, x2.data(), 16, 64, 64, 8, 1.0f, 0, &a);
  EXPECT_TRUE(amx_fits(a, pack_weights_ref(QType::Q4, w.data(), 16, 64, 0, sc.data())));
  EXPECT_FALSE(amx_fits(a, pack_weights_ref(QType::Q6, w.data(), 16, 64, 0, sc.data())));
}

}  // namespace
}  // namespace kt
