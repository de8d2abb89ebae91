// A per-layer, per-site online transform of the activations entering a linear layer:
//     x' = ((x / s) A)[:, perm] B
// s: per-channel smoothing scales (SmoothQuant/DuQuant), A and B: block-diagonal rotations
// with one shared block matrix each (DuQuant), perm: a channel permutation (DuQuant zigzag).
// Any part may be absent. The consuming linears get the inverse on their input side,
// W' = W diag(s) A P B (orthogonal parts), so x' W'^T = x W^T exactly.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/model.h"

namespace kt {

struct SiteTransform {
  int n = 0;
  std::vector<float> smooth;  // empty: none
  Tensor rot_a, rot_b;        // [b, b] block matrices; empty: none
  std::vector<int32_t> perm;  // new channel j takes old channel perm[j]; empty: none

  bool empty() const { return smooth.empty() && rot_a.empty() && rot_b.empty() && perm.empty(); }
  // x [rows, n] <- x'
  void apply(float* x, int64_t rows) const;
  // W [out, n] <- W diag(s) A P B  (input side of the consuming linear)
  void apply_to_weight(Linear& l) const;
  // Validates sizes; throws naming `where`.
  void validate(const std::string& where) const;
};

// y = x (block-diag of `blk`) for rows of length n (n a multiple of the block size).
void apply_block_rotation(float* x, int64_t rows, int n, const Tensor& blk);

}  // namespace kt
