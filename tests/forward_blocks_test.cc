// The forward pass's named blocks (attention, mlp), the K/V cache view attention reads, and
// the chunked layer loop the quantize pipeline and KurTail's capture share.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "kernels/packed.h"
#include "model/attend_cache.h"
#include "model/forward.h"
#include "model/pack_linear.h"
#include "quant/gptq.h"
#include "quant/session.h"
#include "test_util.h"

namespace kt {
namespace {

std::vector<float> embedded(const Model& m, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(n);
  for (auto& t : ids) t = (int32_t)(rng() % m.spec.vocab);
  std::vector<float> x((size_t)n * m.spec.hidden);
  embed_tokens(m, ids.data(), n, x.data());
  return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Records, per site, how many times it was seen and the row count.
struct SiteLog : Hooks {
  std::vector<std::pair<Site, int64_t>> seen;
  void on_activation(int, Site site, float*, int64_t rows, int64_t) override { seen.push_back({site, rows}); }
};

TEST(ForwardBlocks, DecoderLayerIsAttentionThenMlp) {
  auto m = Model::open(test::tinyllama());
  const auto& s = m->spec;
  auto x = embedded(*m, 2 * 24, 1);
  auto y = x;
  SiteLog a, b;
  decoder_layer(s, *m->layer(1), 1, x.data(), 2, 24, 0, nullptr, &a);
  attention(s, *m->layer(1), 1, y.data(), 2, 24, 0, nullptr, &b);
  mlp(s, *m->layer(1), 1, y.data(), 2 * 24, &b);
  EXPECT_TRUE(same_bits(x, y));
  ASSERT_EQ(a.seen.size(), 7u);  // AttnIn, Q, K, V, OIn, MlpIn, DownIn in order
  const Site order[] = {Site::AttnIn, Site::Q, Site::K, Site::V, Site::OIn, Site::MlpIn, Site::DownIn};
  for (int i = 0; i < 7; i++) {
    EXPECT_EQ(a.seen[i].first, order[i]);
    EXPECT_EQ(a.seen[i].second, 48);
  }
  EXPECT_EQ(a.seen, b.seen);
}

// A statistics pass that ends at a site (GPTQ's Hessian captures) sees every site up to it with
// the same values as the whole layer, and none after it.
// A linear held packed while quantization still runs it (Linear::dequantize_per_call, GPTQ's
// later sites) gives the bits of its fp32 grid weights, caches no fp32 copy, and adds its bias;
// 4-, 6- and 8-bit grids, per row and per group; more output rows than one dequantized block
// (1024), a ragged last block, and one-row (decode) inputs.
TEST(ForwardBlocks, PackedLinearDequantizedPerCallGivesTheGridWeightsBits) {
  constexpr int N = 1024 + 300;
  for (int bits : {4, 6, 8})
    for (int group : {0, 64})
      for (int rows : {1, 9}) {
      Linear l;
      l.w = Tensor({N, 128});
      l.w.data = test::randn(l.w.data.size(), 11 + bits);
      l.b = Tensor({N});
      l.b.data = test::randn(N, 12);
      QuantSpec ws;
      ws.bits = bits, ws.symmetric = true;
      ws.gran = group ? Granularity::PerGroup : Granularity::PerRow, ws.group = group;
      rtn_quantize(l, ws);
      const std::vector<float> x = test::randn((size_t)rows * 128, 13);
      std::vector<float> want((size_t)rows * N), got(want.size());
      linear_forward(x.data(), rows, l, want.data());
      Linear held = l;
      held.packed = pack_linear(l, "test", "linear");
      ASSERT_TRUE(held.packed) << bits << " bits";
      std::vector<float>().swap(held.w.data);
      held.dequantize_per_call = true;
      linear_forward(x.data(), rows, held, got.data());
      EXPECT_TRUE(same_bits(got, want)) << bits << " bits, group " << group << ", rows " << rows;
      EXPECT_FALSE(held.dequantized) << "kept an fp32 copy";
    }
}

TEST(ForwardBlocks, PassEndsAtTheSiteItsHooksName) {
  auto m = Model::open(test::tinyllama());
  const auto& s = m->spec;
  struct Recording : Hooks {
    Site last;
    std::vector<std::pair<Site, std::vector<float>>> seen;
    explicit Recording(Site l) : last(l) {}
    void on_activation(int, Site site, float* x, int64_t rows, int64_t cols) override {
      seen.push_back({site, std::vector<float>(x, x + rows * cols)});
    }
    bool pass_ends_at(Site site) const override { return site == last; }
  };
  const Site order[] = {Site::AttnIn, Site::Q, Site::K, Site::V, Site::OIn, Site::MlpIn, Site::DownIn};
  const auto x0 = embedded(*m, 2 * 16, 3);
  Recording whole(Site::LmHeadIn);  // never reached inside a layer: the whole layer runs
  auto x = x0;
  decoder_layer(s, *m->layer(0), 0, x.data(), 2, 16, 0, nullptr, &whole);
  ASSERT_EQ(whole.seen.size(), 7u);
  const size_t ends[] = {1, 5, 6, 7};  // sites seen when the pass ends at attn_in, o_in, mlp_in, down_in
  const Site at[] = {Site::AttnIn, Site::OIn, Site::MlpIn, Site::DownIn};
  for (int i = 0; i < 4; i++) {
    Recording part(at[i]);
    auto y = x0;
    decoder_layer(s, *m->layer(0), 0, y.data(), 2, 16, 0, nullptr, &part);
    ASSERT_EQ(part.seen.size(), ends[i]) << site_name(at[i]);
    for (size_t j = 0; j < ends[i]; j++) {
      EXPECT_EQ(part.seen[j].first, order[j]);
      EXPECT_TRUE(same_bits(part.seen[j].second, whole.seen[j].second)) << site_name(order[j]);
    }
  }
}

TEST(ForwardBlocks, Fp32CacheViewIsTheAppendedValuesInPlace) {
  ModelSpec s;
  s.hidden = 16, s.n_layers = 2, s.n_heads = 2, s.n_kv_heads = 1, s.head_dim = 8, s.ffn = 32, s.vocab = 10;
  KVCache c(s, 2, 5);
  std::vector<float> k(2 * 3 * 8), v(k.size());
  for (size_t i = 0; i < k.size(); i++) k[i] = (float)i, v[i] = -(float)i;
  c.append(1, 2, 0, 3, k.data(), v.data(), nullptr);
  KVScratch scratch;
  KVView kv = c.view(1, 2, 3, &scratch);
  EXPECT_EQ(kv.seq_stride, 5);  // the storage itself: sequences max_len rows apart
  EXPECT_EQ(kv.k, c.k[1].data());
  EXPECT_TRUE(scratch.k.empty());
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < 3; t++)
      for (int j = 0; j < 8; j++) {
        EXPECT_EQ(kv.k[(b * kv.seq_stride + t) * 8 + j], k[(b * 3 + t) * 8 + j]);
        EXPECT_EQ(kv.v[(b * kv.seq_stride + t) * 8 + j], v[(b * 3 + t) * 8 + j]);
      }
}

TEST(ForwardBlocks, QuantizedCacheViewIsEachHeadFakeQuantized) {
  ModelSpec s;
  s.hidden = 32, s.n_layers = 1, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 8, s.ffn = 32, s.vocab = 10;
  for (int bits : {4, 8}) {
    QuantSpec q;
    q.bits = bits;
    q.symmetric = false;
    q.gran = Granularity::PerGroup;
    q.group = 8;
    KVCache c(s, 2, 6, q, q);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    std::vector<float> k(2 * 4 * 16), v(k.size());
    for (auto& e : k) e = nd(rng);
    for (auto& e : v) e = nd(rng);
    // two appends: positions 0..1 then 2..3 of both sequences
    std::vector<float> k0, v0, k1, v1;
    for (int b = 0; b < 2; b++) {
      k0.insert(k0.end(), k.begin() + b * 64, k.begin() + b * 64 + 32);
      k1.insert(k1.end(), k.begin() + b * 64 + 32, k.begin() + b * 64 + 64);
      v0.insert(v0.end(), v.begin() + b * 64, v.begin() + b * 64 + 32);
      v1.insert(v1.end(), v.begin() + b * 64 + 32, v.begin() + b * 64 + 64);
    }
    c.append(0, 2, 0, 2, k0.data(), v0.data(), nullptr);
    c.append(0, 2, 2, 2, k1.data(), v1.data(), nullptr);
    KVScratch scratch;
    KVView kv = c.view(0, 2, 4, &scratch);
    EXPECT_EQ(kv.seq_stride, 4);
    auto fk = k, fv = v;
    fake_quant_ref(fk.data(), 2 * 4, 16, q);  // per group of head_dim = per token per head
    fake_quant_ref(fv.data(), 2 * 4, 16, q);
    for (size_t i = 0; i < k.size(); i++) {
      EXPECT_FLOAT_EQ(kv.k[i], fk[i]) << bits << " bits, value " << i;
      EXPECT_FLOAT_EQ(kv.v[i], fv[i]) << bits << " bits, value " << i;
    }
    EXPECT_NE(std::memcmp(kv.k, k.data(), k.size() * 4), 0) << "the view holds quantized values";
  }
}

// Sequence 0's first n positions copied to the other sequences, in every layout (fp32
// position-major, integer head-major); later positions and sequence 0 untouched.
TEST(ForwardBlocks, KVCacheBroadcastCopiesTheFirstSequencesPrefix) {
  ModelSpec s;
  s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 8, s.hidden = 32, s.n_layers = 2, s.ffn = 8, s.vocab = 10;
  const int nseq = 3, len = 5, n = 3, kvd = (int)s.kv_dim();
  for (int bits : {0, 4, 8}) {
    QuantSpec q;
    q.bits = bits, q.symmetric = false, q.gran = Granularity::PerGroup, q.group = s.head_dim;
    KVCache c = bits ? KVCache(s, nseq, len + 1, q, q) : KVCache(s, nseq, len + 1);
    const std::vector<float> k = test::randn((size_t)nseq * len * kvd, 5), v = test::randn(k.size(), 6);
    for (int l = 0; l < s.n_layers; l++) c.append(l, nseq, 0, len, k.data(), v.data(), nullptr);
    std::vector<std::vector<float>> before(nseq, std::vector<float>((size_t)len * kvd));
    for (int b = 0; b < nseq; b++) c.read(1, true, b, len, before[b].data());
    c.broadcast_first_sequence(n);
    for (int l = 0; l < s.n_layers; l++)
      for (bool is_v : {false, true})
        for (int b = 0; b < nseq; b++) {
          std::vector<float> got((size_t)len * kvd), first((size_t)len * kvd);
          c.read(l, is_v, b, len, got.data());
          c.read(l, is_v, 0, len, first.data());
          const float* own = (is_v ? v : k).data() + (size_t)b * len * kvd;
          for (size_t i = 0; i < got.size(); i++) {
            if (b > 0 && i < (size_t)n * kvd) {
              ASSERT_EQ(got[i], first[i]) << bits << " bits, seq " << b << " value " << i;
            } else if (!bits) {
              ASSERT_EQ(got[i], own[i]) << "seq " << b << " value " << i;
            } else if (l == 1 && is_v) {
              ASSERT_EQ(got[i], before[b][i]) << bits << " bits, seq " << b << " value " << i;
            }
          }
        }
  }
}

// The decode path (attend_cache, reading the stored rows in place) against the prefill path
// (attend over the dequantized view): fp32, 8-bit and 4-bit caches; GQA; a sliding window and
// Gemma 2's soft-cap; one and several queries per sequence at a nonzero position; two
// sequences; an odd head_dim (4-bit codes of a head then straddle bytes); every kernel family.
TEST(ForwardBlocks, AttendCacheEqualsAttendOverTheDequantizedView) {
  struct Case {
    int n_heads, n_kv, hd, bits, window, ntok;
    float cap;
  };
  const Case cases[] = {{4, 2, 16, 4, 0, 1, 0}, {4, 2, 16, 8, 0, 3, 0}, {4, 4, 16, 0, 0, 1, 0},
                        {8, 2, 32, 4, 5, 2, 0}, {4, 2, 16, 4, 0, 16, 30}, {2, 1, 7, 4, 0, 2, 0},
                        {2, 1, 7, 0, 3, 1, 0},   {4, 2, 64, 4, 0, 1, 0}, {2, 2, 128, 4, 7, 3, 0},
                        {8, 2, 128, 4, 0, 1, 0}, {4, 2, 256, 4, 5, 2, 0}, {2, 1, 128, 4, 0, 16, 50}};
  // (4-bit heads of 32 or more dims: the AVX-512 copy reads the codes in place, no unpacking;
  // of 128 and 256 dims, as 32-bit words, 16 rows at a time: 23 positions are a block and a tail)
  const Kernel before = active_kernel();
  for (Kernel kern : {Kernel::Scalar, Kernel::Avx2, Kernel::Vnni, Kernel::Amx}) {
    if (!kernel_supported(kern)) continue;
    set_active_kernel(kern);
    for (const Case& cs : cases) {
      ModelSpec s;
      s.n_heads = cs.n_heads, s.n_kv_heads = cs.n_kv, s.head_dim = cs.hd, s.hidden = cs.n_heads * cs.hd;
      s.n_layers = 2, s.ffn = 8, s.vocab = 10, s.attn_softcap = cs.cap;
      const int nseq = 2, len = 23, pos0 = len - cs.ntok, kvd = (int)s.kv_dim(), qd = (int)s.q_dim();
      QuantSpec qs;
      qs.bits = cs.bits, qs.symmetric = false, qs.gran = Granularity::PerGroup, qs.group = cs.hd;
      KVCache c = cs.bits ? KVCache(s, nseq, len + 2, qs, qs) : KVCache(s, nseq, len + 2);
      std::mt19937 rng(cs.hd * 100 + cs.bits);
      std::normal_distribution<float> nd;
      std::vector<float> k((size_t)nseq * len * kvd), v(k.size()), q((size_t)nseq * cs.ntok * qd);
      for (auto* a : {&k, &v, &q})
        for (auto& e : *a) e = 2 * nd(rng);
      c.append(1, nseq, 0, len, k.data(), v.data(), nullptr);
      std::vector<float> want(q.size()), got(q.size(), -1.0f);
      KVScratch scratch;
      attend(s, q.data(), c.view(1, nseq, len, &scratch), nseq, cs.ntok, pos0, len, cs.window, want.data());
      attend_cache(s, q.data(), c, 1, nseq, cs.ntok, pos0, cs.window, got.data());
      for (size_t i = 0; i < want.size(); i++)
        ASSERT_NEAR(got[i], want[i], 2e-5f * (1 + std::fabs(want[i])))
            << kernel_name(kern) << " heads " << cs.n_heads << "/" << cs.n_kv << " hd " << cs.hd << " bits " << cs.bits
            << " ntok " << cs.ntok << " value " << i;
    }
  }
  set_active_kernel(before);
}

// KDot::Q8 (decode K dots with the query quantized to int8 per 32 dims): its scores are, up to
// float rounding, those of the query quantized and dequantized the same way (scale max |q| /
// 127 per 32 dims, codes rounded to nearest) against the dequantized keys, since q . k_j =
// s_j (sum_d q_d u_jd + o_j sum_d q_d) holds for any q. So attend_cache with Q8 must match
// attend() over the view with that rounded query tightly, and must differ from attend() with
// the exact query (else the Q8 path did not run). Heads of 128 and 256 dims, GQA, a window,
// one and several queries.
TEST(ForwardBlocks, AttendCacheQ8MatchesAttendWithTheQueryRoundedTheSameWay) {
  if (!kernel_supported(Kernel::Vnni)) GTEST_SKIP() << "KDot::Q8 runs on the AVX-512 VNNI copy only";
  struct Case {
    int n_heads, n_kv, hd, window, ntok;
  };
  const Case cases[] = {{4, 2, 128, 0, 1}, {8, 2, 128, 5, 3}, {2, 2, 256, 0, 1}, {4, 1, 256, 0, 16}};
  const Kernel before = active_kernel();
  set_active_kernel(Kernel::Vnni);
  if (!attend_cache_has_q8()) {
    set_active_kernel(before);
    GTEST_SKIP() << "this build's AVX-512 copy has no intrinsics (clang): Q8 runs as F32";
  }
  for (const Case& cs : cases) {
    ModelSpec s;
    s.n_heads = cs.n_heads, s.n_kv_heads = cs.n_kv, s.head_dim = cs.hd, s.hidden = cs.n_heads * cs.hd;
    s.n_layers = 1, s.ffn = 8, s.vocab = 10;
    const int nseq = 2, len = 41, pos0 = len - cs.ntok, kvd = (int)s.kv_dim(), qd = (int)s.q_dim();
    QuantSpec qs;
    qs.bits = 4, qs.symmetric = false, qs.gran = Granularity::PerGroup, qs.group = cs.hd;
    KVCache c(s, nseq, len, qs, qs);
    std::mt19937 rng(cs.hd + cs.ntok);
    std::normal_distribution<float> nd;
    std::vector<float> k((size_t)nseq * len * kvd), v(k.size()), q((size_t)nseq * cs.ntok * qd);
    for (auto* a : {&k, &v, &q})
      for (auto& e : *a) e = 2 * nd(rng);
    c.append(0, nseq, 0, len, k.data(), v.data(), nullptr);
    std::vector<float> qr = q;  // the query rounded as Q8 rounds it
    for (size_t b0 = 0; b0 < qr.size(); b0 += 32) {
      float amax = 0;
      for (size_t d = 0; d < 32; d++) amax = std::max(amax, std::fabs(qr[b0 + d]));
      for (size_t d = 0; d < 32; d++) qr[b0 + d] = std::nearbyint(qr[b0 + d] * (127.0f / amax)) * (amax / 127.0f);
    }
    KVScratch scratch;
    const KVView view = c.view(0, nseq, len, &scratch);
    std::vector<float> want(q.size()), exact(q.size()), got(q.size());
    attend(s, qr.data(), view, nseq, cs.ntok, pos0, len, cs.window, want.data());
    attend(s, q.data(), view, nseq, cs.ntok, pos0, len, cs.window, exact.data());
    c.k_dot = KDot::Q8;
    attend_cache(s, q.data(), c, 0, nseq, cs.ntok, pos0, cs.window, got.data());
    double moved = 0;
    for (size_t i = 0; i < want.size(); i++) {
      ASSERT_NEAR(got[i], want[i], 2e-5f * (1 + std::fabs(want[i])))
          << "heads " << cs.n_heads << "/" << cs.n_kv << " hd " << cs.hd << " ntok " << cs.ntok << " value " << i;
      moved = std::max(moved, (double)std::fabs(got[i] - exact[i]));
    }
    EXPECT_GT(moved, 1e-4) << "hd " << cs.hd << ": the query's rounding does not show; did Q8 run?";
  }
  set_active_kernel(before);
}

// --k-dot reaches the caches through the session (run, bench and eval build theirs there).
TEST(ForwardBlocks, SessionCachesTakeTheChosenKDot) {
  auto m = Model::open(test::tinyllama());
  Session sess(*m);
  EXPECT_EQ(sess.new_cache(1, 4).k_dot, KDot::F32);
  sess.set_k_dot(KDot::Q8);
  EXPECT_EQ(sess.new_cache(1, 4).k_dot, KDot::Q8);
}

TEST(ForwardBlocks, ChunkedLayerLoopVisitsEveryChunkOnceAndKeepsOrLeavesX) {
  auto m = Model::open(test::tinyllama());
  const auto& s = m->spec;
  const int nwin = 7, ctx = 16;
  const auto x0 = embedded(*m, nwin * ctx, 2);
  auto x = x0;
  std::vector<int> starts;
  SiteLog log;
  for_each_layer_chunk(s, *m->layer(0), 0, x.data(), nwin, ctx, 3, [&](int b0) -> Hooks* {
    starts.push_back(b0);
    return &log;
  }, /*keep_output=*/false);
  EXPECT_EQ(starts, (std::vector<int>{0, 3, 6}));
  EXPECT_TRUE(same_bits(x, x0)) << "a statistics-only pass leaves x as it was";
  ASSERT_EQ(log.seen.size(), 21u);
  EXPECT_EQ(log.seen[0].second, 3 * ctx);
  EXPECT_EQ(log.seen[20].second, 1 * ctx);  // the last chunk holds one window

  for_each_layer_chunk(s, *m->layer(0), 0, x.data(), nwin, ctx, 3, [](int) -> Hooks* { return nullptr; });
  auto ref = x0;
  for (int b0 = 0; b0 < nwin; b0 += 3)
    decoder_layer(s, *m->layer(0), 0, ref.data() + (size_t)b0 * ctx * s.hidden, std::min(3, nwin - b0), ctx, 0,
                  nullptr, nullptr);
  EXPECT_TRUE(same_bits(x, ref));
  EXPECT_FALSE(same_bits(x, x0));
}

}  // namespace
}  // namespace kt
