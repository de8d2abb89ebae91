// Text generation with a KV cache: greedy or seeded temperature / top-p sampling.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "quant/session.h"

namespace kt {

struct GenOptions {
  int n_new = 40;
  float temperature = 0.0f;  // 0: greedy
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool stop_at_eos = true;
  // filled by generate(): cache storage, prefill and decode time
  size_t* kv_bytes = nullptr;
  double* prefill_seconds = nullptr;
};

// Returns prompt + generated ids. on_token is called for each new id as it is produced.
std::vector<int> generate(const Session& s, const std::vector<int>& prompt, const GenOptions& opt,
                          const std::function<void(int)>& on_token = nullptr);

// Picks the next token from one row of logits (deterministic for a given rng state).
int sample_token(const float* logits, int vocab, float temperature, float top_p, uint64_t* rng_state);

}  // namespace kt
