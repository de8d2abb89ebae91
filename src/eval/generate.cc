#include "eval/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>

#include "util/error.h"

namespace kt {

int sample_token(const float* logits, int vocab, float temperature, float top_p, uint64_t* rng_state) {
  if (temperature <= 0) return (int)(std::max_element(logits, logits + vocab) - logits);
  std::vector<double> p(vocab);
  float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int i = 0; i < vocab; i++) sum += p[i] = std::exp((logits[i] - mx) / temperature);
  for (auto& x : p) x /= sum;
  std::vector<int> idx(vocab);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return p[a] > p[b]; });
  double cum = 0;
  int keep = 0;
  while (keep < vocab && (keep == 0 || cum < top_p)) cum += p[idx[keep++]];
  std::mt19937_64 rng(*rng_state);
  double r = std::uniform_real_distribution<double>(0.0, cum)(rng);
  *rng_state = rng();
  double c = 0;
  for (int i = 0; i < keep; i++) {
    c += p[idx[i]];
    if (r < c) return idx[i];
  }
  return idx[keep - 1];
}

std::vector<int> generate(const Session& s, const std::vector<int>& prompt, const GenOptions& opt,
                          const std::function<void(int)>& on_token) {
  const Model& m = s.model();
  if (prompt.empty()) fail("--prompt", "empty, and the tokenizer has no BOS token to start from");
  const int max_len = std::min<int>(m.spec.max_pos, (int)prompt.size() + opt.n_new);
  if ((int)prompt.size() > m.spec.max_pos)
    fail("--prompt", std::to_string(prompt.size()) + " tokens, more than the model's maximum context " +
         std::to_string(m.spec.max_pos));
  KVCache cache = s.new_cache(1, max_len);
  std::vector<int32_t> toks(prompt.begin(), prompt.end());
  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = forward(m, toks.data(), 1, (int)toks.size(), &cache, s.hooks(), LogitRows::Last);
  if (opt.prefill_seconds) *opt.prefill_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (opt.kv_bytes) *opt.kv_bytes = cache.bytes();
  std::vector<int> out = prompt;
  uint64_t rng = opt.seed;
  const int V = m.spec.vocab;
  for (int step = 0; step < opt.n_new && (int)out.size() < max_len + 1; step++) {
    const float* last = logits.data() + (logits.size() / V - 1) * V;
    int next = sample_token(last, V, opt.temperature, opt.top_p, &rng);
    out.push_back(next);
    if (on_token) on_token(next);
    bool eos = std::find(m.spec.eos_ids.begin(), m.spec.eos_ids.end(), next) != m.spec.eos_ids.end();
    if ((opt.stop_at_eos && eos) || cache.len >= max_len) break;
    int32_t t = next;
    logits = forward(m, &t, 1, 1, &cache, s.hooks());
  }
  return out;
}

}  // namespace kt
