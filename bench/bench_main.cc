#include <benchmark/benchmark.h>

#include "util/blas_env.h"

int main(int argc, char** argv) {
  kt::ensure_runtime_env(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
