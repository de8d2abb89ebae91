#include "transform/duquant.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "transform/smooth.h"

namespace kt {

int duquant_block_size(int n, int max_block) {
  int b = 1;
  while (b * 2 <= max_block && n % (b * 2) == 0) b *= 2;
  return b;
}

Tensor greedy_block_rotation(const std::vector<float>& X, int64_t rows, int n, int block, int steps) {
  const int b = block;
  // the block holding the largest |x|
  int64_t arg = 0;
  for (int64_t i = 0; i < rows * n; i++)
    if (std::fabs(X[i]) > std::fabs(X[arg])) arg = i;
  const int blk = (int)(arg % n) / b;
  std::vector<double> cur((size_t)rows * b);
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < b; j++) cur[r * b + j] = X[r * n + (int64_t)blk * b + j];
  // Each step multiplies by Q = E_d H E_d with H the Householder reflection e_0 -> uniform,
  // i.e. Q = I - 2 u u^T / (u^T u) with u = E_d (e_0 - 1/sqrt(b)): a rank-1 update.
  std::vector<double> total((size_t)b * b, 0.0), best;
  for (int i = 0; i < b; i++) total[(size_t)i * b + i] = 1.0;
  best = total;
  auto absmax = [&](int* ch) {
    double m = 0;
    for (size_t i = 0; i < cur.size(); i++)
      if (std::fabs(cur[i]) > m) m = std::fabs(cur[i]), *ch = (int)(i % b);
    return m;
  };
  int ch = 0;
  double best_max = absmax(&ch);
  const double uni = 1.0 / std::sqrt((double)b);
  std::vector<double> u(b);
  for (int s = 0; s < steps; s++) {
    for (int j = 0; j < b; j++) u[j] = -uni;
    u[ch] += 1.0;  // E_d swaps 0 and d: the "1 - 1/sqrt(b)" entry lands on the outlier channel
    double uu = 0;
    for (double v : u) uu += v * v;
    const double f = 2.0 / uu;
#pragma omp parallel for if (rows * b > 65536)
    for (int64_t r = 0; r < rows; r++) {
      double* x = &cur[r * b];
      double d = 0;
      for (int j = 0; j < b; j++) d += x[j] * u[j];
      d *= f;
      for (int j = 0; j < b; j++) x[j] -= d * u[j];
    }
    for (int i = 0; i < b; i++) {  // total <- total Q
      double* t = &total[(size_t)i * b];
      double d = 0;
      for (int j = 0; j < b; j++) d += t[j] * u[j];
      d *= f;
      for (int j = 0; j < b; j++) t[j] -= d * u[j];
    }
    double m = absmax(&ch);
    if (m < best_max) {
      best_max = m;
      best = total;
    }
  }
  Tensor out({b, b});
  for (size_t i = 0; i < best.size(); i++) out.data[i] = (float)best[i];
  return out;
}

std::vector<int32_t> zigzag_permutation(const std::vector<double>& chan_max, int nblocks) {
  const int n = (int)chan_max.size(), b = n / nblocks;
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return chan_max[a] > chan_max[c]; });
  std::vector<std::vector<int32_t>> blocks(nblocks);
  for (int i = 0; i < n; i++) {
    int round = i / nblocks, pos = i % nblocks;
    int k = round % 2 == 0 ? pos : nblocks - 1 - pos;
    blocks[k].push_back(order[i]);
  }
  std::vector<int32_t> perm;
  for (auto& bl : blocks) {
    (void)b;
    perm.insert(perm.end(), bl.begin(), bl.end());
  }
  return perm;
}

SiteTransform build_duquant(const std::vector<float>& X, int64_t rows, int n, const std::vector<double>& act_absmax,
                            const std::vector<const Linear*>& ws, const DuQuantOptions& o) {
  SiteTransform t;
  t.n = n;
  t.smooth = smooth_scales(act_absmax, ws, o.alpha);
  const int b = duquant_block_size(n, o.block);
  std::vector<float> x = X;
  for (int64_t r = 0; r < rows; r++)
    for (int j = 0; j < n; j++) x[r * n + j] /= t.smooth[j];
  if (b < 2) return t;  // odd width: smoothing only
  t.rot_a = greedy_block_rotation(x, rows, n, b, o.steps);
  apply_block_rotation(x.data(), rows, n, t.rot_a);
  if (o.permute && n / b > 1) {
    std::vector<double> cm(n, 0.0);
    for (int64_t r = 0; r < rows; r++)
      for (int j = 0; j < n; j++) cm[j] = std::max(cm[j], (double)std::fabs(x[r * n + j]));
    t.perm = zigzag_permutation(cm, n / b);
    std::vector<float> y(x.size());
    for (int64_t r = 0; r < rows; r++)
      for (int j = 0; j < n; j++) y[r * n + j] = x[r * n + t.perm[j]];
    x.swap(y);
  }
  t.rot_b = greedy_block_rotation(x, rows, n, b, o.steps);
  return t;
}

}  // namespace kt
