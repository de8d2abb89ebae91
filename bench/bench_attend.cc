// Decode attention at depth: one query per sequence over L cached positions of one layer, the
// fused path (attend_cache: rows read in place, int codes unpacked per row) vs the prefill path
// (KVCache::view dequantizes the layer, then attend's per-head sgemm). Llama-2-7B's attention
// shape (32 heads, head_dim 128, no GQA) and Llama-3's GQA (8 kv heads); int4, int8 and fp32
// caches. Reports the cache bytes read per second.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "model/attend_cache.h"
#include "model/forward.h"

namespace {

struct Setup {
  kt::ModelSpec s;
  kt::KVCache cache;
  std::vector<float> q, out;
  Setup(int n_kv, int bits, int L, int layers = 1) : s(spec(n_kv, layers)), cache(make(s, bits, L)) {
    std::mt19937 g(1);
    std::normal_distribution<float> d;
    std::vector<float> k((size_t)L * s.kv_dim()), v(k.size());
    for (int l = 0; l < layers; l++) {
      for (auto& x : k) x = d(g);
      for (auto& x : v) x = d(g);
      cache.append(l, 1, 0, L, k.data(), v.data(), nullptr);
    }
    cache.len = L;
    q.resize(s.q_dim());
    for (auto& x : q) x = d(g);
    out.resize(q.size());
  }
  static kt::ModelSpec spec(int n_kv, int layers) {
    kt::ModelSpec s;
    s.n_heads = 32, s.n_kv_heads = n_kv, s.head_dim = 128, s.hidden = 4096, s.n_layers = layers, s.ffn = 8, s.vocab = 8;
    return s;
  }
  static kt::KVCache make(const kt::ModelSpec& s, int bits, int L) {
    if (!bits) return kt::KVCache(s, 1, L + 1);
    kt::QuantSpec q;
    q.bits = bits, q.symmetric = false, q.gran = kt::Granularity::PerGroup, q.group = s.head_dim;
    return kt::KVCache(s, 1, L + 1, q, q);
  }
};

template <bool Fused>
void BM_Decode(benchmark::State& st) {
  const int n_kv = st.range(0), bits = st.range(1), L = st.range(2);
  Setup u(n_kv, bits, L);
  for (auto _ : st) {
    if (Fused) {
      kt::attend_cache(u.s, u.q.data(), u.cache, 0, 1, 1, L - 1, 0, u.out.data());
    } else {
      kt::KVScratch scratch;
      kt::attend(u.s, u.q.data(), u.cache.view(0, 1, L, &scratch), 1, 1, L - 1, L, 0, u.out.data());
    }
    benchmark::DoNotOptimize(u.out.data());
  }
  st.counters["cache GB/s"] = benchmark::Counter((double)u.cache.bytes() * L / (L + 1),
                                                 benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

// Cold: the layer read rotates over 12 layers' caches (about 110 MB at int4 and 2048 positions,
// beyond a server L3), so each call streams its rows from DRAM as a real decode step does once
// the layer's weights have passed through the cache. q8 1: the K dots as KDot::Q8.
void BM_DecodeCold(benchmark::State& st) {
  const int n_kv = st.range(0), bits = st.range(1), L = st.range(2), layers = 12;
  Setup u(n_kv, bits, L, layers);
  if (st.range(3)) u.cache.k_dot = kt::KDot::Q8;
  int layer = 0;
  for (auto _ : st) {
    kt::attend_cache(u.s, u.q.data(), u.cache, layer, 1, 1, L - 1, 0, u.out.data());
    layer = (layer + 1) % layers;
    benchmark::DoNotOptimize(u.out.data());
  }
  st.counters["cache GB/s"] = benchmark::Counter((double)u.cache.bytes() / layers * L / (L + 1),
                                                 benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_DecodeCold)->Name("decode_attend_cache_cold")->ArgNames({"kv_heads", "bits", "len", "q8"})
    ->Args({32, 4, 2048, 0})->Args({32, 4, 2048, 1})->Args({8, 4, 2048, 0})->Args({8, 4, 2048, 1})
    ->Unit(benchmark::kMicrosecond)->UseRealTime();

#define CASES Args({32, 4, 2048})->Args({32, 8, 2048})->Args({32, 0, 2048})->Args({8, 4, 2048})->Args({32, 4, 512})
BENCHMARK(BM_Decode<true>)->Name("decode_attend_cache")->CASES->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_Decode<false>)->Name("decode_view_then_attend")->CASES->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
