// The machine's memory read bandwidth: the yardstick for decode, which streams every weight (and
// the layer's K/V cache) once per token. Sums a buffer far larger than the last-level cache with
// 64-byte vector loads on 1 and 2 threads (OpenMP, the threads decode uses), so
// bytes-read-per-token x tokens/s can be read as a fraction of it (docs/RESULTS.md).
//   OMP_NUM_THREADS=2 ./build/kurtail_bench --benchmark_filter=read_bandwidth
#include <benchmark/benchmark.h>
#include <omp.h>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace {

// 4 GiB of floats: 8x the largest last-level cache seen on the dev machines (480 MiB; earlier
// ones had 32 MiB), so every pass comes from DRAM.
constexpr size_t kBytes = size_t(4) << 30;

float sum_range(const float* p, size_t n) {
  // 16 independent accumulators: the loads, not the adds, set the pace
  float acc[16] = {};
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; j++) acc[j] += p[i + j];
  float s = 0;
  for (; i < n; i++) s += p[i];
  for (float a : acc) s += a;
  return s;
}

void read_bandwidth(benchmark::State& st) {
  const int threads = (int)st.range(0);
  static std::vector<float> buf;
  if (buf.empty()) {
    buf.resize(kBytes / sizeof(float));
    // first touch from the same threads that read it, in the same static partition
#pragma omp parallel for schedule(static) num_threads(2)
    for (size_t i = 0; i < buf.size(); i++) buf[i] = (float)(i & 1023) * 1e-3f;
  }
  const size_t n = buf.size();
  for (auto _ : st) {
    float total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      const int t = omp_get_thread_num(), nt = omp_get_num_threads();
      const size_t lo = n * t / nt, hi = n * (t + 1) / nt;
      total += sum_range(buf.data() + lo, hi - lo);
    }
    benchmark::DoNotOptimize(total);
  }
  st.SetBytesProcessed((int64_t)st.iterations() * (int64_t)kBytes);
}
BENCHMARK(read_bandwidth)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
