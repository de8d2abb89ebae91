// Yardsticks from oneDNN (Debian libdnnl-dev; built only when CMake finds it): its u8 x s8 ->
// s32 integer GEMM and its fp32 sgemm at the same shapes as bench_qgemm.cc, so the VNNI kernels
// are compared with a tuned vendor library, not only with OpenBLAS fp32.
#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.h>

#include <cstdint>
#include <random>
#include <vector>

namespace {

void BM_OneDnnU8S8S32(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  std::mt19937 g(1);
  std::uniform_int_distribution<int> ud(0, 255), sd(-127, 127);
  std::vector<uint8_t> a((size_t)M * K);
  std::vector<int8_t> b((size_t)N * K);
  for (auto& v : a) v = (uint8_t)ud(g);
  for (auto& v : b) v = (int8_t)sd(g);
  std::vector<int32_t> c((size_t)M * N);
  const int32_t co = 0;
  for (auto _ : st) {
    // row-major C[M,N] = A[M,K] * B[N,K]^T
    dnnl_gemm_u8s8s32('N', 'T', 'F', M, N, K, 1.0f, a.data(), K, 0, b.data(), K, 0, 0.0f, c.data(), N, &co);
    benchmark::DoNotOptimize(c.data());
  }
  st.counters["GOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                            benchmark::Counter::kIs1000);
}

void BM_OneDnnSgemm(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  std::vector<float> a((size_t)M * K, 0.5f), b((size_t)N * K, 0.25f), c((size_t)M * N);
  for (auto _ : st) {
    dnnl_sgemm('N', 'T', M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);
    benchmark::DoNotOptimize(c.data());
  }
  st.counters["GOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                            benchmark::Counter::kIs1000);
}

#define ONEDNN_SHAPES Args({512, 4096, 4096})->Args({128, 4096, 4096})->Args({128, 11008, 4096})->Args({1, 4096, 4096})->Args({512, 704, 256})->Unit(benchmark::kMillisecond)->UseRealTime()
BENCHMARK(BM_OneDnnU8S8S32)->Name("onednn_u8s8s32")->ONEDNN_SHAPES;
BENCHMARK(BM_OneDnnSgemm)->Name("onednn_sgemm")->ONEDNN_SHAPES;

}  // namespace
