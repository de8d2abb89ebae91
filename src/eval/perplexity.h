// Perplexity over non-overlapping windows of a tokenized text (the GPTQ/QuaRot protocol:
// tokenize the whole text once, cut nsamples = ntokens / ctx windows, average next-token NLL).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/forward.h"

namespace kt {

struct Windows {
  int ctx = 0;
  std::vector<int32_t> tokens;  // n * ctx ids, window-major
  int n() const { return ctx ? (int)(tokens.size() / ctx) : 0; }
  const int32_t* window(int i) const { return tokens.data() + (int64_t)i * ctx; }
};

// Reads and tokenizes a text file (BOS once at the start, as HF tokenizers do), streamed:
// 1 MiB blocks go through the tokenizer's stream, so memory is the ids plus a bounded working
// set, never the whole text. Regular files only (a FIFO or /dev/zero is refused before a byte
// is read); Ctrl-C is polled per block. Empty text is an error naming the file.
std::vector<int32_t> tokenize_file(const Tokenizer& tok, const std::string& path);
// Cuts windows; max_windows <= 0 means all. Fails if not even one window fits.
Windows make_windows(const std::vector<int32_t>& tokens, int ctx, int max_windows, const std::string& what);

struct EvalOptions {
  int batch = 0;         // windows per forward chunk; 0 = choose by an activation budget
  bool progress = true;  // progress line on stderr
  Hooks* hooks = nullptr;
  // When enabled: run every window through a quantized KV cache with these K/V quantizers
  // (real int KV storage) instead of attending over fp32 K/V.
  QuantSpec kv_k, kv_v;
};

// Runs the model over every window and calls on_logits(window index, logits [ctx, vocab]).
// Layer-major within each chunk of windows, so a streamed model loads each layer once per chunk.
void run_windows(const Model& m, const Windows& w, const EvalOptions& opt,
                 const std::function<void(int, const float*)>& on_logits, const std::string& label = "eval");

struct PplResult {
  double mean_nll = 0, ppl = 0;
  int64_t predicted = 0;
  int windows = 0, ctx = 0;
  double seconds = 0, tokens_per_s = 0;
};

// Mean NLL (natural log) over positions 1..ctx-1 of every window.
PplResult perplexity(const Model& m, const Windows& w, const EvalOptions& opt);
// log(sum_j exp(r_j)) of one logit row (float exp, double accumulation); argmax optional.
float log_sum_exp(const float* r, int n, int* argmax = nullptr);
// NLL of targets[t+1] under logits row t, summed over t = 0..n-2 (double accumulation).
double window_nll(const float* logits, const int32_t* tokens, int n, int vocab);

}  // namespace kt
