// Integer GEMM throughput (GOP/s, 2 ops per multiply-add) for each kernel and weight type at
// LLM shapes, next to OpenBLAS fp32 sgemm on the same shape. The quantized timings include the
// per-token activation quantization and the float epilogue, i.e. a whole linear layer.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "model/forward.h"
#include "kernels/packed.h"

namespace {

using namespace kt;

struct Shapes {
  int M, N, K;
};

void BM_QLinear(benchmark::State& st, Kernel kern, QType t, int abits) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  if (!kernel_supported(kern)) {
    st.SkipWithError("kernel not supported on this CPU");
    return;
  }
  std::mt19937 g(1);
  const WTypeTraits& tt = wtype_traits(t);
  std::uniform_int_distribution<int> wd(t == QType::Q8 ? -127 : tt.qmin, tt.qmax);
  std::normal_distribution<float> nd;
  std::vector<int8_t> w((size_t)N * K);
  for (auto& v : w) v = (int8_t)wd(g);
  std::vector<float> sc(N, 0.01f), x((size_t)M * K), y((size_t)M * N);
  for (auto& v : x) v = nd(g);
  PackedWeight p = pack_weights_ref(t, w.data(), N, K, 0, sc.data());
  QuantizedActs a;
  for (auto _ : st) {
    quantize_acts(kern, x.data(), M, K, p.Kp, abits, 1.0f, 0, &a);
    gemm_q(kern, a, p, nullptr, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                            benchmark::Counter::kIs1000);
  st.counters["weight_bytes"] = (double)p.bytes();
}

void BM_Sgemm(benchmark::State& st) {
  const int M = st.range(0), N = st.range(1), K = st.range(2);
  std::vector<float> x((size_t)M * K, 0.5f), w((size_t)N * K, 0.25f), y((size_t)M * N);
  for (auto _ : st) {
    sgemm_nt(x.data(), w.data(), y.data(), M, N, K);
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                            benchmark::Counter::kIs1000);
  st.counters["weight_bytes"] = (double)N * K * 4;
}

// prefill (M = 128, 512) and decode (M = 1) at Llama-7B-like and tinyllama shapes
#define LLM_SHAPES Args({512, 4096, 4096})->Args({512, 11008, 4096})->Args({512, 4096, 11008})->Args({128, 4096, 4096})->Args({128, 11008, 4096})->Args({1, 4096, 4096})->Args({512, 704, 256})->Unit(benchmark::kMillisecond)->UseRealTime()
BENCHMARK(BM_Sgemm)->Name("linear_fp32_openblas")->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w4a4_amx, Kernel::Amx, QType::Q4, 4)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w8a8_amx, Kernel::Amx, QType::Q8, 8)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w4a8_vnni, Kernel::Vnni, QType::Q4, 8)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w4a4_vnni, Kernel::Vnni, QType::Q4, 4)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w8a8_vnni, Kernel::Vnni, QType::Q8, 8)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w4a8_avx2, Kernel::Avx2, QType::Q4, 8)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w8a8_avx2, Kernel::Avx2, QType::Q8, 8)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w6a6_vnni, Kernel::Vnni, QType::Q6, 6)->LLM_SHAPES;
BENCHMARK_CAPTURE(BM_QLinear, w6a8_avx2, Kernel::Avx2, QType::Q6, 8)->LLM_SHAPES;
// The output layer at decode, Llama-3.2-1B's 128256 x 2048 (llama.cpp keeps it at Q6_K): the
// bytes a token reads are what sets these, int8 vs int6 vs int4.
#define HEAD_SHAPE Args({1, 128256, 2048})->Unit(benchmark::kMillisecond)->UseRealTime()
BENCHMARK_CAPTURE(BM_QLinear, head_w8a8_vnni, Kernel::Vnni, QType::Q8, 8)->HEAD_SHAPE;
BENCHMARK_CAPTURE(BM_QLinear, head_w6a6_vnni, Kernel::Vnni, QType::Q6, 6)->HEAD_SHAPE;
BENCHMARK_CAPTURE(BM_QLinear, head_w4a4_vnni, Kernel::Vnni, QType::Q4, 4)->HEAD_SHAPE;
BENCHMARK_CAPTURE(BM_QLinear, w4a8_scalar, Kernel::Scalar, QType::Q4, 8)->Args({128, 4096, 4096})->Args({1, 4096, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
