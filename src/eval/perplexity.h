// Perplexity over non-overlapping windows of a tokenized text, in one of two protocols:
// - kurtail (the GPTQ/QuaRot papers'): tokenize the whole text once (BOS once at the start),
//   cut ntokens / ctx windows, average the next-token NLL of every position of every window;
// - llama.cpp (llama-perplexity's): the same chunks, but the first token of each chunk is
//   replaced by BOS and only the second half is scored: logits at positions ctx/2 .. ctx-2
//   predict tokens ctx/2+1 .. ctx-1 (ctx - 1 - ctx/2 predictions per chunk), so numbers compare
//   one to one with llama-perplexity's at the same --ctx (docs/EVAL.md).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/text.h"
#include "quant/session.h"

namespace kt {

enum class PplProtocol { Kurtail, LlamaCpp };
const char* ppl_protocol_name(PplProtocol p);

struct EvalOptions {
  int batch = 0;         // windows per forward chunk; 0 = choose by an activation budget
  bool progress = true;  // progress line on stderr
  PplProtocol protocol = PplProtocol::Kurtail;
};

// llama.cpp's protocol on windows cut by make_windows: every window's first token becomes
// `bos` (llama-perplexity does this whether or not the text had a BOS there). Fails, naming
// `what`, when there are fewer than 2 windows' tokens, as llama-perplexity does.
void llamacpp_windows(Windows& w, int32_t bos, const std::string& what);

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

// Mean NLL (natural log) over the predictions the protocol scores (kurtail: positions 1..ctx-1
// of every window; llama.cpp: ctx/2+1..ctx-1).
PplResult perplexity(const Session& s, const Windows& w, const EvalOptions& opt);
// log(sum_j exp(r_j)) of one logit row (float exp, double accumulation); argmax optional.
float log_sum_exp(const float* r, int n, int* argmax = nullptr);
// NLL of targets[t+1] under logits row t, summed over t = 0..n-2 (double accumulation).
// Sum of the NLLs of tokens[first+1 .. n-1] given logits at positions first .. n-2.
double window_nll(const float* logits, const int32_t* tokens, int n, int vocab, int first = 0);

}  // namespace kt
