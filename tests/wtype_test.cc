// The weight-type table (kernels/wtype.h) and pack_linear (model/pack_linear.h): every packed
// row round-trips every code through its byte layout at padded shapes, dequantizes to
// code * scale, has the size rule the loader checks, and pack_linear produces exactly the bytes
// of pack_weights_ref from the linear's codes.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "core/quantizer.h"
#include "io/safetensors.h"
#include "kernels/packed.h"
#include "kernels/wtype.h"
#include "model/linear_quant.h"
#include "model/model.h"
#include "model/pack_linear.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

struct Shape {
  int N, K, g;  // g: group size (pack_weights_ref) or group count (a Linear's qscale), by test
};

std::vector<WType> packed_types() {
  std::vector<WType> v;
  for (const WTypeTraits& t : kWTypeTraits)
    if (t.packed()) v.push_back(t.type);
  return v;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Codes [n, k] covering every value of the type's range (in order, then random).
std::vector<int8_t> all_codes(const WTypeTraits& t, int N, int K, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> d(t.qmin, t.qmax);
  std::vector<int8_t> q((size_t)N * K);
  for (size_t i = 0; i < q.size(); i++) q[i] = (int8_t)(i < (size_t)(t.qmax - t.qmin + 1) ? t.qmin + (int)i : d(g));
  return q;
}

TEST(WType, TableRowsAreIndexedByTypeAndConsistent) {
  ASSERT_EQ(packed_types().size(), 3u);  // Q4, Q6 and Q8 today
  for (int i = 0; i < kWTypeCount; i++) {
    const WTypeTraits& t = kWTypeTraits[i];
    EXPECT_EQ((int)t.type, i) << t.name;
    EXPECT_EQ(&wtype_traits(t.type), &t);
    if (!t.packed()) {
      EXPECT_EQ(t.pack_step, nullptr);
      continue;
    }
    EXPECT_EQ(t.qmin, -(1 << (t.bits - 1))) << t.name;
    EXPECT_EQ(t.qmax, (1 << (t.bits - 1)) - 1) << t.name;
    EXPECT_EQ(t.step_bytes * 8, (size_t)kTileN * kStepK * t.bits) << t.name;  // no wasted bits
    ASSERT_NE(t.pack_step, nullptr);
    ASSERT_NE(t.unpack_step, nullptr);
  }
  EXPECT_FALSE(wtype_traits(WType::F32).packed());
  EXPECT_EQ(wtype_traits(WType::Q4).bits, 4);
  EXPECT_EQ(wtype_traits(WType::Q8).bits, 8);
  EXPECT_EQ(wtype_traits(WType::Q6).bits, 6);
  // the kernels' compile-time view (packed.h) is the table's
  for (WType t : packed_types()) EXPECT_EQ(packed_step_size(t), wtype_traits(t).step_bytes) << wtype_traits(t).name;
  for (WType t : {WType::Q4, WType::Q6}) EXPECT_EQ(nibble_offset(t), -wtype_traits(t).qmin);
  EXPECT_EQ(packed_wtype_bits_list(), "4, 6 or 8");
}

TEST(WType, PackUnpackRoundTripsEveryCodeAtPaddedShapes) {
  for (WType wt : packed_types()) {
    const WTypeTraits& t = wtype_traits(wt);
    for (auto [N, K, group] : {Shape{19, 37, 0}, Shape{33, 300, 0}, Shape{5, 48, 16}, Shape{16, 8, 0}}) {
      const std::vector<int8_t> q = all_codes(t, N, K, 7);
      const int G = group ? K / group : 1;
      std::vector<float> sc((size_t)N * G, 0.5f);
      PackedWeight p = pack_weights_ref(wt, q.data(), N, K, group, sc.data());
      EXPECT_EQ(p.type, wt);
      EXPECT_EQ(p.data.size(), t.packed_bytes(N, K)) << t.name << " " << N << "x" << K;
      std::vector<int8_t> back((size_t)N * K, 99);
      unpack_weights_ref(p, back.data());
      EXPECT_EQ(back, q) << t.name << " " << N << "x" << K;
    }
    // One step through the table's functions directly: every code at every position.
    int8_t codes[kTileN * kStepK], back[kTileN * kStepK];
    for (int i = 0; i < kTileN * kStepK; i++) codes[i] = (int8_t)(t.qmin + i % (t.qmax - t.qmin + 1));
    std::vector<uint8_t> step(t.step_bytes);
    t.pack_step(codes, step.data());
    t.unpack_step(step.data(), back);
    EXPECT_EQ(std::vector<int8_t>(codes, codes + kTileN * kStepK), std::vector<int8_t>(back, back + kTileN * kStepK));
  }
}

TEST(WType, PackedBytesFollowTheDocumentedLayout) {
  // packed.h: Q4 byte 4c+j holds K offset j (low nibble) and 4+j (high nibble) as code + 8;
  // Q8 holds offsets 0..3 in the first 64 bytes and 4..7 in the second, as signed bytes.
  std::vector<int8_t> q(16 * 8, 0);
  q[1 * 8 + 5] = -3;  // channel 1, k 5
  q[2 * 8 + 2] = 6;   // channel 2, k 2
  std::vector<float> sc(16, 1.0f);
  PackedWeight p4 = pack_weights_ref(WType::Q4, q.data(), 16, 8, 0, sc.data());
  ASSERT_EQ(p4.data.size(), 64u);
  EXPECT_EQ(p4.data[4 * 1 + 1], (uint8_t)(8 | (5 << 4)));
  EXPECT_EQ(p4.data[4 * 2 + 2], (uint8_t)(14 | (8 << 4)));
  EXPECT_EQ(p4.data[0], 0x88);
  q[1 * 8 + 5] = -100;
  PackedWeight p8 = pack_weights_ref(WType::Q8, q.data(), 16, 8, 0, sc.data());
  ASSERT_EQ(p8.data.size(), 128u);
  EXPECT_EQ((int8_t)p8.data[64 + 4 * 1 + 1], -100);
  EXPECT_EQ((int8_t)p8.data[4 * 2 + 2], 6);
  EXPECT_EQ(p8.data[0], 0);
  // Q6: u = code + 32; lo is a Q4 step of u & 15, hi[i] packs u >> 4 of lo byte i's low-nibble
  // weight (bits 0-1), lo byte i+32's low-nibble weight (2-3), lo byte i's high-nibble weight
  // (4-5) and lo byte i+32's high-nibble weight (6-7). A zero code is u = 32: nibble 0, top 2.
  q.assign(16 * 8, 0);
  q[1 * 8 + 5] = -3;   // channel 1, k 5: u = 29 = 0b01'1101, lo byte 5 high nibble, hi[5] bits 4-5
  q[10 * 8 + 2] = 31;  // channel 10, k 2: u = 63, lo byte 42 low nibble, hi[10] bits 2-3
  PackedWeight p6 = pack_weights_ref(WType::Q6, q.data(), 16, 8, 0, sc.data());
  ASSERT_EQ(p6.data.size(), 96u);
  EXPECT_EQ(p6.data[5], (uint8_t)(0 | (13 << 4)));
  EXPECT_EQ(p6.data[42], (uint8_t)(15 | (0 << 4)));
  EXPECT_EQ(p6.data[0], 0x00);
  EXPECT_EQ(p6.data[64 + 5], (uint8_t)(2 | 2 << 2 | 1 << 4 | 2 << 6));
  EXPECT_EQ(p6.data[64 + 10], (uint8_t)(2 | 3 << 2 | 2 << 4 | 2 << 6));
  EXPECT_EQ(p6.data[64 + 0], 0xAA);
}

TEST(WType, PackRefusesCodesOutsideTheTypeAndUnpackedTypes) {
  std::vector<int8_t> q(8 * 8, 0);
  std::vector<float> sc(8, 1.0f);
  q[9] = 8;
  EXPECT_NE(error_of([&] { pack_weights_ref(WType::Q4, q.data(), 8, 8, 0, sc.data()); }).find("int4 value out of range"),
            std::string::npos);
  q[9] = -9;
  EXPECT_THROW(pack_weights_ref(WType::Q4, q.data(), 8, 8, 0, sc.data()), Error);
  EXPECT_NO_THROW(pack_weights_ref(WType::Q8, q.data(), 8, 8, 0, sc.data()));
  EXPECT_NE(error_of([&] { pack_weights_ref(WType::F32, q.data(), 8, 8, 0, sc.data()); }).find("not a packed type"),
            std::string::npos);
}

TEST(WType, DequantizeIsCodeTimesScale) {
  std::mt19937 g(3);
  std::uniform_real_distribution<float> sd(0.001f, 2.0f);
  for (WType wt : packed_types()) {
    const WTypeTraits& t = wtype_traits(wt);
    const int N = 21, K = 48, group = 16, G = K / group;
    const std::vector<int8_t> q = all_codes(t, N, K, 11);
    std::vector<float> sc((size_t)N * G);
    for (float& s : sc) s = sd(g);
    PackedWeight p = pack_weights_ref(wt, q.data(), N, K, group, sc.data());
    const std::vector<float> w = dequantize_packed(p);
    ASSERT_EQ(w.size(), q.size());
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++) {
        const float want = (float)q[(size_t)n * K + k] * sc[(size_t)n * G + k / group];
        ASSERT_EQ(w[(size_t)n * K + k], want) << t.name << " " << n << "," << k;
        ASSERT_EQ(t.dequantize(q[(size_t)n * K + k], sc[(size_t)n * G + k / group]), want);
      }
  }
}

TEST(WType, WTypeForAcceptsOnlyPackableSpecs) {
  QuantSpec s;
  s.bits = 4;
  EXPECT_EQ(wtype_for(s), WType::Q4);
  s.bits = 8;
  s.gran = Granularity::PerGroup;
  s.group = 64;
  EXPECT_EQ(wtype_for(s), WType::Q8);
  QuantSpec asym;
  asym.bits = 4;
  asym.symmetric = false;
  EXPECT_FALSE(wtype_for(asym));
  QuantSpec tensor;
  tensor.bits = 4;
  tensor.gran = Granularity::PerTensor;
  EXPECT_FALSE(wtype_for(tensor));
  for (int bits : {2, 3, 5, 7, 16}) {
    QuantSpec b;
    b.bits = bits;
    EXPECT_FALSE(wtype_for(b)) << bits;
  }
  EXPECT_EQ(wtype_for_bits(4), WType::Q4);
  EXPECT_EQ(wtype_for_bits(6), WType::Q6);
  EXPECT_EQ(wtype_for_bits(8), WType::Q8);
  for (double bits : {0.0, 3.0, 4.5, 16.0, 32.0, -4.0, (double)NAN, (double)INFINITY}) EXPECT_FALSE(wtype_for_bits(bits)) << bits;
}

TEST(WType, GridCodeAcceptsOnlyGridValuesInRange) {
  const WTypeTraits& t = wtype_traits(WType::Q4);
  int8_t c = 0;
  EXPECT_TRUE(grid_code(t, -0.8f, 0.1f, &c));
  EXPECT_EQ(c, -8);
  EXPECT_TRUE(grid_code(t, 0.7f, 0.1f, &c));
  EXPECT_EQ(c, 7);
  EXPECT_FALSE(grid_code(t, 0.8f, 0.1f, &c));   // code 8: out of int4
  EXPECT_FALSE(grid_code(t, 0.35f, 0.1f, &c));  // between two codes
  EXPECT_FALSE(grid_code(t, NAN, 0.1f, &c));
  EXPECT_TRUE(grid_code(t, 0.0f, 0.0f, &c));  // an all-zero group has scale 0
  EXPECT_EQ(c, 0);
  EXPECT_FALSE(grid_code(t, 0.1f, 0.0f, &c));
  EXPECT_TRUE(grid_code(wtype_traits(WType::Q8), 12.7f, 0.1f, &c));
  EXPECT_EQ(c, 127);
}

// A linear whose fp32 weights are code * scale (what the weight quantizers leave).
Linear grid_linear(WType wt, int N, int K, int G, unsigned seed, std::vector<int8_t>* codes) {
  const WTypeTraits& t = wtype_traits(wt);
  Linear l;
  l.w = Tensor({N, K});
  l.qscale = Tensor({N, G});
  l.qbits = t.bits;
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> sd(0.001f, 0.1f);
  for (float& s : l.qscale.data) s = sd(g);
  *codes = all_codes(t, N, K, seed);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++)
      l.w.data[(size_t)n * K + k] = t.dequantize((*codes)[(size_t)n * K + k], l.qscale.data[(size_t)n * G + k / (K / G)]);
  return l;
}

TEST(PackLinear, BytesEqualPackWeightsRefOfTheCodes) {
  for (WType wt : packed_types())
    for (auto [N, K, G] : {Shape{19, 37, 1}, Shape{40, 64, 4}, Shape{7, 200, 1}}) {
      std::vector<int8_t> q;
      Linear l = grid_linear(wt, N, K, G, 5, &q);
      if (G > 1) {  // an all-zero group has scale 0 (quant/gptq.cc leaves it so)
        for (int k = 0; k < K / G; k++) l.w.data[k] = q[k] = 0;
        l.qscale.data[0] = 0;
      }
      auto p = pack_linear(l, "m", "layer 0");
      ASSERT_TRUE(p);
      const PackedWeight want = pack_weights_ref(wt, q.data(), N, K, G > 1 ? K / G : 0, l.qscale.ptr());
      EXPECT_EQ(p->type, wt);
      EXPECT_EQ(p->data, want.data);
      EXPECT_EQ(p->scales, want.scales);
      EXPECT_EQ(p->group, want.group);
      EXPECT_EQ(p->offsets_gn, want.offsets_gn);
      EXPECT_EQ(dequantize_packed(*p), l.w.data);  // the matching unpack gives the weights back
      EXPECT_EQ(linear_wtype(l), wt);
    }
}

TEST(PackLinear, RefusesWeightsOffTheirGrid) {
  for (WType wt : packed_types()) {
    std::vector<int8_t> q;
    Linear l = grid_linear(wt, 9, 24, 1, 2, &q);
    Linear off = l;
    off.w.data[30] += 0.5f * l.qscale.data[1];
    EXPECT_EQ(error_of([&] { pack_linear(off, "dir", "layer 3"); }),
              "dir: layer 3: weights are not on their recorded integer grid");
    Linear big = l;  // on the grid, but one step past qmax
    big.w.data[0] = (float)(wtype_traits(wt).qmax + 1) * l.qscale.data[0];
    EXPECT_THROW(pack_linear(big, "dir", "layer 3"), Error);
  }
}

TEST(PackLinear, NullWithoutAPackedForm) {
  std::vector<int8_t> q;
  Linear l = grid_linear(WType::Q4, 8, 32, 1, 1, &q);
  Linear none = l;
  none.qscale = Tensor();
  EXPECT_FALSE(pack_linear(none, "m", "x"));
  EXPECT_FALSE(linear_wtype(none));
  Linear b3 = l;
  b3.qbits = 3;
  EXPECT_FALSE(pack_linear(b3, "m", "x"));
  Linear g4 = grid_linear(WType::Q4, 8, 32, 8, 1, &q);  // group 4: not a multiple of kStepK
  EXPECT_FALSE(pack_linear(g4, "m", "x"));
  EXPECT_FALSE(linear_wtype(g4));
  Linear g8 = grid_linear(WType::Q4, 8, 32, 4, 1, &q);  // group 8
  EXPECT_TRUE(pack_linear(g8, "m", "x"));
  Linear loaded = l;  // already packed (loaded from disk): that packing is the answer
  loaded.packed = pack_linear(l, "m", "x");
  loaded.w.data.clear();
  EXPECT_EQ(pack_linear(loaded, "m", "x"), loaded.packed);
}

TEST(WType, SizeRuleIsWhatTheLoaderChecks) {
  const std::string dir = test::temp_dir("wtype");
  for (WType wt : packed_types()) {
    const WTypeTraits& t = wtype_traits(wt);
    const int N = 19, K = 37;
    const std::vector<int8_t> q = all_codes(t, N, K, 4);
    std::vector<float> sc(N, 0.25f);
    PackedWeight p = pack_weights_ref(wt, q.data(), N, K, 0, sc.data());
    for (int extra : {0, -1, 1}) {
      Tensor bytes({(int64_t)p.data.size() + extra});
      for (size_t i = 0; i < bytes.data.size(); i++) bytes.data[i] = i < p.data.size() ? p.data[i] : 0;
      Tensor scale({N, 1});
      scale.data = sc;
      Tensor bits = Tensor::from({(float)t.bits});
      const std::string path = dir + "/" + t.name + std::to_string(extra + 1) + ".safetensors";
      write_safetensors(path, {{"l.qweight", &bytes}, {"l.qscale", &scale}, {"l.qbits", &bits}}, {}, {"l.qweight"});
      SafetensorsFile f(path);
      if (extra == 0) {
        const LinearQuant lq = check_linear_quant(f, "l", N, K);
        EXPECT_EQ(lq.qbits, t.bits);
        Tensor qs;
        int qb = 0;
        auto loaded = load_packed_weight(f, "l", N, K, &qs, &qb);
        EXPECT_EQ(loaded->type, wt);
        EXPECT_EQ(qb, t.bits);
        EXPECT_EQ(loaded->data, p.data);
        EXPECT_EQ(loaded->offsets_gn, p.offsets_gn);
      } else {
        EXPECT_NE(error_of([&] { check_linear_quant(f, "l", N, K); }).find("packs into " + std::to_string(t.packed_bytes(N, K))),
                  std::string::npos)
            << t.name << " " << extra;
        Tensor qs;
        int qb = 0;
        EXPECT_THROW(load_packed_weight(f, "l", N, K, &qs, &qb), Error);
      }
    }
  }
}

}  // namespace
}  // namespace kt
