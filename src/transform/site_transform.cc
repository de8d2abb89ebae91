#include "transform/site_transform.h"



#include <algorithm>
#include <cmath>

#include "kernels/gemm.h"
#include "util/error.h"

namespace kt {

void apply_block_rotation(float* x, int64_t rows, int n, const Tensor& blk) {
  const int b = (int)blk.dim(0);
  const int64_t nb = (int64_t)rows * (n / b);  // every block of every row is a row of length b
  std::vector<float> tmp(x, x + rows * n);
  sgemm(false, false, nb, b, b, 1.0f, tmp.data(), b, blk.ptr(), b, 0.0f, x, b);
}

namespace {

void core(const SiteTransform& t, float* x, int64_t rows, bool weight_side) {
  const int n = t.n;
  if (!t.smooth.empty()) {
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; r++)
      for (int j = 0; j < n; j++) x[r * n + j] = weight_side ? x[r * n + j] * t.smooth[j] : x[r * n + j] / t.smooth[j];
  }
  if (!t.rot_a.empty()) apply_block_rotation(x, rows, n, t.rot_a);
  if (!t.perm.empty()) {
    std::vector<float> row(n);
    for (int64_t r = 0; r < rows; r++) {
      float* v = x + r * n;
      for (int j = 0; j < n; j++) row[j] = v[t.perm[j]];
      std::copy(row.begin(), row.end(), v);
    }
  }
  if (!t.rot_b.empty()) apply_block_rotation(x, rows, n, t.rot_b);
}

}  // namespace

void SiteTransform::apply(float* x, int64_t rows) const { core(*this, x, rows, false); }

void SiteTransform::apply_to_weight(Linear& l) const {
  if (l.in() != n) fail("site transform size does not match the layer input");
  core(*this, l.w.ptr(), l.out(), true);
}

void SiteTransform::validate(const std::string& where) const {
  if (!smooth.empty() && (int)smooth.size() != n) fail(where, "smoothing vector has the wrong size");
  for (float s : smooth)
    if (!(s > 0) || !std::isfinite(s)) fail(where, "smoothing scales must be positive and finite");
  for (const Tensor* r : {&rot_a, &rot_b})
    if (!r->empty() && (r->shape.size() != 2 || r->dim(0) != r->dim(1) || r->dim(0) <= 0 || n % r->dim(0) != 0))
      fail(where, "block rotation must be square with a size dividing " + std::to_string(n));
  if (!perm.empty()) {
    if ((int)perm.size() != n) fail(where, "permutation has the wrong size");
    std::vector<char> seen(n, 0);
    for (int p : perm) {
      if (p < 0 || p >= n || seen[p]) fail(where, "permutation is not a permutation");
      seen[p] = 1;
    }
  }
}

}  // namespace kt
