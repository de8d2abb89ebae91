// DuQuant (arXiv 2406.01721): smoothing, then a greedy outlier-driven block rotation, a zigzag
// permutation that spreads the largest channels across blocks, and a second block rotation.
// Settings from the paper/code (../shared/reference/algorithms.md section 4): alpha 0.6,
// block 128 (or the largest power of two <= 128 dividing the width), up to 256 greedy steps,
// one block matrix shared by all blocks, built on the block holding the largest outlier.
#pragma once
#include <vector>

#include "transform/site_transform.h"

namespace kt {

struct DuQuantOptions {
  double alpha = 0.6;
  int block = 128;
  int steps = 256;
  bool permute = true;
};

// Block size used for width n: the largest power of two <= max_block dividing n.
int duquant_block_size(int n, int max_block);

// The greedy rotation for activations X [rows, n] (already smoothed): repeatedly take the
// channel with the largest |x| in the chosen block, swap it to position 0 and spread it with
// an orthogonal matrix whose first row is uniform (a Householder reflection e_0 -> 1/sqrt(b));
// keep the prefix of steps that minimises the block's max |x|. Returns the [b, b] block matrix.
Tensor greedy_block_rotation(const std::vector<float>& X, int64_t rows, int n, int block, int steps);

// Zigzag: channels sorted by max |x| (descending) are dealt to blocks 0..K-1, K-1..0, ...
// perm[j] = old channel placed at new position j.
std::vector<int32_t> zigzag_permutation(const std::vector<double>& chan_max, int nblocks);

// The full DuQuant transform for one site from a sample of its activations and the weights
// that consume it.
SiteTransform build_duquant(const std::vector<float>& X, int64_t rows, int n, const std::vector<double>& act_absmax,
                            const std::vector<const Linear*>& ws, const DuQuantOptions& o);

}  // namespace kt
