// Rotary position embedding with every frequency scaling transformers implements
// (modeling_rope_utils.py): default, linear, dynamic NTK, YaRN, llama3, longrope.
#pragma once
#include <cstdint>
#include <vector>

#include "core/spec.h"

namespace kt {

// The frequencies one forward uses. `positions` is how many positions the forward covers
// (pos0 + ntok): dynamic NTK and longrope choose their frequencies by it, as transformers'
// dynamic_rope_update does with max(position_ids) + 1. (transformers keeps the largest length
// seen so far for dynamic NTK until a forward falls back below max_position_embeddings;
// kurtail recomputes from each forward's own length, which is the same for every fresh window
// and for a generation whose length only grows.)
// longrope (Phi-3.5) follows Phi3's dynamic update: long_factor when the forward covers more than
// original_max_position_embeddings positions, short_factor otherwise. A KV-cached generation
// that crosses that length therefore keeps the keys it cached with the short factors and rotates
// the queries and keys of each later forward with the long ones, as transformers does (it never
// re-rotates its cache); a full-sequence forward is exactly transformers'.
struct RopeFreqs {
  std::vector<double> inv_freq;  // head_dim / 2
  double attention_factor = 1.0;  // multiplies cos and sin (YaRN, longrope)
};
RopeFreqs rope_freqs(const ModelSpec& s, int64_t positions);

// Rotates x [nseq*ntok, nheads*head_dim] (sequence-major) in place for positions pos0.. .
void apply_rope(const ModelSpec& s, float* x, int64_t ntok, int nheads, int pos0, int nseq);

}  // namespace kt
