// Perplexity over non-overlapping windows of a tokenized text (the GPTQ/QuaRot protocol:
// tokenize the whole text once, cut nsamples = ntokens / ctx windows, average next-token NLL).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/text.h"
#include "quant/session.h"

namespace kt {

struct EvalOptions {
  int batch = 0;         // windows per forward chunk; 0 = choose by an activation budget
  bool progress = true;  // progress line on stderr
};

// Runs the session's model over every window and calls on_logits(window index, logits [ctx,
// vocab]). Layer-major within each chunk of windows, so a streamed model loads each layer once
// per chunk. When the session's plan quantizes K/V in the cache, every window runs through a
// quantized KV cache (real int KV storage) instead of attending over fp32 K/V.
void run_windows(const Session& sess, const Windows& w, const EvalOptions& opt,
                 const std::function<void(int, const float*)>& on_logits, const std::string& label = "eval");

struct PplResult {
  double mean_nll = 0, ppl = 0;
  int64_t predicted = 0;
  int windows = 0, ctx = 0;
  double seconds = 0, tokens_per_s = 0;
};

// Mean NLL (natural log) over positions 1..ctx-1 of every window.
PplResult perplexity(const Session& s, const Windows& w, const EvalOptions& opt);
// log(sum_j exp(r_j)) of one logit row (float exp, double accumulation); argmax optional.
float log_sum_exp(const float* r, int n, int* argmax = nullptr);
// NLL of targets[t+1] under logits row t, summed over t = 0..n-2 (double accumulation).
double window_nll(const float* logits, const int32_t* tokens, int n, int vocab);

}  // namespace kt
