#include "eval/perplexity.h"

#include "util/ordered_sum.h"

#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "io/tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/progress.h"

namespace kt {

float log_sum_exp(const float* r, int n, int* argmax) {
  float mx = r[0];
  int am = 0;
  for (int j = 1; j < n; j++)
    if (r[j] > mx) mx = r[j], am = j;
  double s = 0;
  for (int j = 0; j < n; j++) s += std::exp(r[j] - mx);  // float exp: 1 ulp, summed in double
  if (argmax) *argmax = am;
  return (float)(std::log(s) + mx);
}

double window_nll(const float* logits, const int32_t* tokens, int n, int vocab, int first) {
  return ordered_sum(n - 1 - first, [&](int64_t i) {
    const int64_t t = first + i;
    const float* r = logits + t * vocab;
    return (double)log_sum_exp(r, vocab) - r[tokens[t + 1]];
  });
}

const char* ppl_protocol_name(PplProtocol p) { return p == PplProtocol::LlamaCpp ? "llama.cpp" : "kurtail"; }

void llamacpp_windows(Windows& w, int32_t bos, const std::string& what) {
  if (w.n() < 2)
    fail(what, "the llama.cpp perplexity protocol needs at least 2 windows of " + std::to_string(w.ctx) +
                   " tokens (llama-perplexity refuses fewer); the text has " + std::to_string(w.tokens.size()));
  for (int i = 0; i < w.n(); i++) w.tokens[(size_t)i * w.ctx] = bos;
}

void run_windows(const Session& sess, const Windows& w, const EvalOptions& opt,
                 const std::function<void(int, const float*)>& on_logits, const std::string& label) {
  const Model& m = sess.model();
  const auto& s = m.spec;
  if (w.ctx > s.max_pos)
    fail("--ctx " + std::to_string(w.ctx) + " exceeds the model's maximum context of " + std::to_string(s.max_pos));
  int batch = opt.batch;
  if (batch <= 0) {
    // Activation working set per window ~ ctx * (3*hidden + 2*q + 2*kv + 3*ffn) floats; budget 1 GiB,
    // but a resident model gains nothing from huge chunks, so cap at 8 windows then.
    double per = (double)w.ctx * (3.0 * s.hidden + 2.0 * s.q_dim() + 2.0 * s.kv_dim() + 3.0 * s.ffn) * 4;
    batch = (int)std::max(1.0, std::floor((1ull << 30) / per));
    if (m.resident()) batch = std::min(batch, 8);
  }
  Progress prog(label, w.n(), opt.progress);
  std::vector<float> logits((size_t)w.ctx * s.vocab);
  for (int b0 = 0; b0 < w.n(); b0 += batch) {
    const int nb = std::min(batch, w.n() - b0);
    const int64_t rows = (int64_t)nb * w.ctx;
    std::vector<float> x((size_t)rows * s.hidden);
    embed_tokens(m, w.window(b0), rows, x.data());
    std::unique_ptr<KVCache> cache = sess.new_quantized_cache(nb, w.ctx);  // null: fp32 K/V within the chunk
    for (int l = 0; l < s.n_layers; l++) {
      auto lw = m.layer(l);
      decoder_layer(s, *lw, l, x.data(), nb, w.ctx, 0, cache.get(), sess.hooks());
    }
    for (int i = 0; i < nb; i++) {
      final_logits(m, x.data() + (int64_t)i * w.ctx * s.hidden, w.ctx, logits.data(), sess.hooks());
      on_logits(b0 + i, logits.data());
    }
    prog.update(b0 + nb, (int64_t)(b0 + nb) * w.ctx);
  }
  prog.finish();
}

PplResult perplexity(const Session& sess, const Windows& w, const EvalOptions& opt) {
  const Model& m = sess.model();
  auto t0 = std::chrono::steady_clock::now();
  double total = 0;
  const int first = opt.protocol == PplProtocol::LlamaCpp ? w.ctx / 2 : 0;
  run_windows(sess, w, opt,
              [&](int i, const float* logits) { total += window_nll(logits, w.window(i), w.ctx, m.spec.vocab, first); });
  PplResult r;
  r.windows = w.n();
  r.ctx = w.ctx;
  r.predicted = (int64_t)w.n() * (w.ctx - 1 - first);
  r.mean_nll = total / r.predicted;
  r.ppl = std::exp(r.mean_nll);
  r.seconds = seconds_since(t0);
  r.tokens_per_s = (double)w.n() * w.ctx / r.seconds;
  return r;
}

}  // namespace kt
