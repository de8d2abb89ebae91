// Integer GEMM kernels against a plain reference (bit-exact int32 accumulators) for every
// kernel this CPU supports, odd shapes, per-channel and grouped Q4, and Q8.
#include <gtest/gtest.h>

#include <random>

#include "quant/quantizer.h"
#include "runtime/packed.h"

namespace kt {
namespace {

struct Case {
  QType t;
  int M, N, K, group;
};

std::vector<Kernel> kernels() {
  std::vector<Kernel> v;
  for (Kernel k : {Kernel::Scalar, Kernel::Avx2, Kernel::Vnni})
    if (kernel_supported(k)) v.push_back(k);
  return v;
}

TEST(Kernels, AllKernelsMatchPlainReferenceBitExactly) {
  std::mt19937 g(1);
  const Case cases[] = {{QType::Q4, 1, 16, 8, 0},    {QType::Q4, 5, 37, 200, 0}, {QType::Q4, 7, 64, 256, 64},
                        {QType::Q4, 9, 33, 704, 32}, {QType::Q8, 3, 21, 96, 0},  {QType::Q8, 6, 48, 256, 128},
                        {QType::Q4, 1, 256, 704, 0}, {QType::Q4, 13, 80, 64, 0},  {QType::Q8, 12, 96, 32, 0}};
  for (const Case& c : cases) {
    const int lo = c.t == QType::Q4 ? -8 : -128, hi = c.t == QType::Q4 ? 7 : 127;
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
  for (int bits : {8, 4}) {
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

}  // namespace
}  // namespace kt
