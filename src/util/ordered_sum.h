// Parallel sums whose bits do not depend on the thread count: each term is computed in
// parallel into its own slot, then added up serially in index order. (An OpenMP
// `reduction(+)` adds per-thread partials, so 1 and 2 threads give different last bits,
// and a learned rotation or a perplexity would differ between machines.)
#pragma once
#include <cstdint>
#include <vector>

namespace kt {

// Returns sum over i in [0, n) of f(i), f called once per i (possibly concurrently).
template <class F>
double ordered_sum(int64_t n, F&& f) {
  std::vector<double> v((size_t)(n > 0 ? n : 0));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) v[(size_t)i] = f(i);
  double s = 0;
  for (double x : v) s += x;
  return s;
}

}  // namespace kt
