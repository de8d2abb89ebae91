// sgemm throughput: the OpenBLAS wrapper used by every linear layer vs a naive reference loop,
// at LLM-like shapes (M tokens x N outputs x K inputs). Reports GFLOP/s.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "model/forward.h"

namespace {

void naive_nt(const float* x, const float* w, float* y, int M, int N, int K) {
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float s = 0;
      for (int k = 0; k < K; k++) s += x[(size_t)i * K + k] * w[(size_t)j * K + k];
      y[(size_t)i * N + j] = s;
    }
}

std::vector<float> rnd(size_t n) {
  std::mt19937 g(1);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

template <bool Naive>
void BM_Sgemm(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  auto x = rnd((size_t)M * K), w = rnd((size_t)N * K);
  std::vector<float> y((size_t)M * N);
  for (auto _ : st) {
    if (Naive) naive_nt(x.data(), w.data(), y.data(), M, N, K);
    else kt::sgemm_nt(x.data(), w.data(), y.data(), M, N, K);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                              benchmark::Counter::kIs1000);
}

// tinyllama-8m shapes (hidden 256, ffn 704, vocab 8192) and a 7B-like projection.
#define SHAPES                                                                                          \
  Args({512, 256, 256})->Args({512, 704, 256})->Args({512, 256, 704})->Args({512, 8192, 256})->Args( \
      {1, 704, 256})->Args({128, 4096, 4096})
BENCHMARK(BM_Sgemm<false>)->Name("sgemm_openblas")->SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Sgemm<true>)->Name("sgemm_naive")->Args({512, 256, 256})->Args({512, 704, 256})->Args({1, 704, 256})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
