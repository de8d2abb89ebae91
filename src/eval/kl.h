// Agreement with a reference model on the same windows: mean KL(P_ref || P_model) of the
// next-token distributions, top-1 agreement, and both perplexities.
#pragma once
#include "eval/perplexity.h"

namespace kt {

struct CompareResult {
  double mean_kl = 0, top1 = 0;
  double mean_nll = 0, ppl = 0, ref_mean_nll = 0, ref_ppl = 0;
  int64_t positions = 0;
  double seconds = 0;
};

// The reference runs as its session says (open_session: fake quantization, fp32 K/V cache).
CompareResult compare_to_reference(const Session& ref, const Session& sess, const Windows& w, const EvalOptions& opt);

}  // namespace kt
