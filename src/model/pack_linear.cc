#include "model/pack_linear.h"

#include <vector>

#include "kernels/packed.h"
#include "model/model.h"
#include "util/error.h"

namespace kt {

std::optional<WType> linear_wtype(const Linear& l) {
  if (l.qscale.empty()) return std::nullopt;
  const std::optional<WType> t = wtype_for_bits(l.qbits);
  const int64_t G = l.qscale.dim(1);
  if (!t || (G > 1 && (l.in() / G) % kStepK != 0)) return std::nullopt;
  return t;
}

std::shared_ptr<const PackedWeight> pack_linear(const Linear& l, const std::string& file, const std::string& what) {
  if (l.packed) return l.packed;
  const std::optional<WType> t = linear_wtype(l);
  if (!t) return nullptr;
  const WTypeTraits& tt = wtype_traits(*t);
  const int N = (int)l.out(), K = (int)l.in(), G = (int)l.qscale.dim(1), group = K / G;
  std::vector<int8_t> q((size_t)N * K);
  int off_grid = 0;  // rows in parallel (a 7B layer is 200M weights); the failure after them
#pragma omp parallel for schedule(static) reduction(| : off_grid) if ((int64_t)N * K >= (1 << 20))
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++)
      if (!grid_code(tt, l.w.data[(size_t)n * K + k], l.qscale.data[(size_t)n * G + k / group], &q[(size_t)n * K + k]))
        off_grid = 1;
  if (off_grid) fail(file, what + ": weights are not on their recorded integer grid");
  return std::make_shared<const PackedWeight>(pack_weights_ref(*t, q.data(), N, K, G > 1 ? group : 0, l.qscale.ptr()));
}

bool unpack_linear(Linear& l) {
  if (!l.packed || !l.w.data.empty()) return false;
  l.w.data = dequantize_packed(*l.packed);
  l.packed.reset();
  return true;
}

}  // namespace kt
