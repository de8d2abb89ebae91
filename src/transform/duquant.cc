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

namespace {

// Householder reflection mapping e_0 to the uniform unit vector (first row = 1/sqrt(b)).
Tensor uniform_spreader(int b) {
  Tensor h({b, b});
  std::vector<double> v(b);
  const double u = 1.0 / std::sqrt((double)b);
  for (int i = 0; i < b; i++) v[i] = (i == 0 ? 1.0 : 0.0) - u;
  double nv = 0;
  for (double x : v) nv += x * x;
  for (int i = 0; i < b; i++)
    for (int j = 0; j < b; j++) h.data[(size_t)i * b + j] = (float)((i == j) - (nv > 0 ? 2 * v[i] * v[j] / nv : 0));
  return h;
}

// Q = E_d H E_d where E_d swaps coordinates 0 and d.
Tensor swapped(const Tensor& h, int d) {
  const int b = (int)h.dim(0);
  std::vector<int> idx(b);
  std::iota(idx.begin(), idx.end(), 0);
  std::swap(idx[0], idx[d]);
  Tensor q({b, b});
  for (int i = 0; i < b; i++)
    for (int j = 0; j < b; j++) q.data[(size_t)i * b + j] = h.data[(size_t)idx[i] * b + idx[j]];
  return q;
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  const int n = (int)a.dim(0);
  Tensor c({n, n});
  for (int i = 0; i < n; i++)
    for (int k = 0; k < n; k++) {
      float v = a.data[(size_t)i * n + k];
      for (int j = 0; j < n; j++) c.data[(size_t)i * n + j] += v * b.data[(size_t)k * n + j];
    }
  return c;
}

}  // namespace

Tensor greedy_block_rotation(const std::vector<float>& X, int64_t rows, int n, int block, int steps) {
  const int b = block;
  // the block holding the largest |x|
  int64_t arg = 0;
  for (int64_t i = 0; i < rows * n; i++)
    if (std::fabs(X[i]) > std::fabs(X[arg])) arg = i;
  const int blk = (int)(arg % n) / b;
  std::vector<float> cur((size_t)rows * b);
  for (int64_t r = 0; r < rows; r++)
    std::copy_n(&X[r * n + (int64_t)blk * b], b, &cur[r * b]);
  const Tensor h = uniform_spreader(b);
  Tensor total({b, b}), best({b, b});
  for (int i = 0; i < b; i++) total.data[(size_t)i * b + i] = best.data[(size_t)i * b + i] = 1.0f;
  auto absmax = [&](const std::vector<float>& v, int* ch) {
    float m = 0;
    for (size_t i = 0; i < v.size(); i++)
      if (std::fabs(v[i]) > m) m = std::fabs(v[i]), *ch = (int)(i % b);
    return m;
  };
  int ch = 0;
  float best_max = absmax(cur, &ch);
  for (int s = 0; s < steps; s++) {
    Tensor q = swapped(h, ch);
    std::vector<float> next((size_t)rows * b, 0.0f);
    for (int64_t r = 0; r < rows; r++)
      for (int k = 0; k < b; k++) {
        float v = cur[r * b + k];
        if (v == 0) continue;
        for (int j = 0; j < b; j++) next[r * b + j] += v * q.data[(size_t)k * b + j];
      }
    cur.swap(next);
    total = matmul(total, q);
    float m = absmax(cur, &ch);
    if (m < best_max) {
      best_max = m;
      best = total;
    }
  }
  return best;
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
