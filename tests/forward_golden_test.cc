// The fp32 forward pass against golden activations from an independent PyTorch
// implementation with HF semantics (../shared/data/models/tinyllama-8m/golden).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "model/forward.h"
#include "test_util.h"

namespace kt {
namespace {

double rel_err(const float* a, const std::vector<float>& b) { return test::max_rel_diff(a, b.data(), b.size()); }

std::vector<int32_t> golden_ids() {
  auto j = nlohmann::json::parse(read_file(test::golden("input_ids.json"), SIZE_MAX));
  return j.get<std::vector<int32_t>>();
}

TEST(ForwardGolden, HiddenStatesAndLogitsMatchPyTorch) {
  auto m = Model::open(test::tinyllama());
  auto ids = golden_ids();
  ASSERT_EQ(ids.size(), 64u);
  const int T = 64, d = m->spec.hidden;
  std::vector<float> x((size_t)T * d);
  embed_tokens(*m, ids.data(), T, x.data());
  EXPECT_LT(rel_err(x.data(), test::read_f32(test::golden("embeddings.f32"))), 1e-6);
  for (int l = 0; l < m->spec.n_layers; l++) {
    decoder_layer(m->spec, *m->layer(l), l, x.data(), 1, T, 0, nullptr, nullptr);
    double e = rel_err(x.data(), test::read_f32(test::golden("hidden_" + std::to_string(l) + ".f32")));
    EXPECT_LT(e, 1e-4) << "layer " << l;
  }
  std::vector<float> logits((size_t)T * m->spec.vocab);
  final_logits(*m, x.data(), T, logits.data(), nullptr);
  EXPECT_LT(rel_err(x.data(), test::read_f32(test::golden("final_norm.f32"))), 1e-4);
  EXPECT_LT(rel_err(logits.data(), test::read_f32(test::golden("logits.f32"))), 1e-4);
}

TEST(ForwardGolden, KVCacheDecodeEqualsPrefill) {
  auto m = Model::open(test::tinyllama());
  auto ids = golden_ids();
  const int T = 24, V = m->spec.vocab;
  auto full = forward(*m, ids.data(), 1, T, nullptr, nullptr);
  KVCache cache(m->spec, 1, T);
  auto first = forward(*m, ids.data(), 1, 10, &cache, nullptr);
  for (int t = 10; t < T; t++) {
    auto step = forward(*m, &ids[t], 1, 1, &cache, nullptr);
    double num = 0, den = 0;
    for (int j = 0; j < V; j++) {
      num = std::max(num, (double)std::fabs(step[j] - full[(size_t)t * V + j]));
      den = std::max(den, (double)std::fabs(full[(size_t)t * V + j]));
    }
    EXPECT_LT(num / den, 1e-5) << "position " << t;
  }
}

// LogitRows::Last (prompt prefill, `bench`'s pp) gives each sequence's last row of the full logits,
// with and without a cache and after a cached prefix.
TEST(ForwardGolden, LastRowLogitsAreTheFullLogitsLastRows) {
  auto m = Model::open(test::tinyllama());
  auto ids = golden_ids();
  const int T = 12, V = m->spec.vocab, B = 2;  // two sequences: ids[0..12) and ids[12..24)
  auto full = forward(*m, ids.data(), B, T, nullptr, nullptr);
  auto check = [&](const std::vector<float>& last, const char* what) {
    ASSERT_EQ(last.size(), (size_t)B * V) << what;
    for (int b = 0; b < B; b++) {
      const float* want = &full[((size_t)b * T + T - 1) * V];
      EXPECT_LT(test::max_rel_diff(&last[(size_t)b * V], want, V), 1e-5) << what << " sequence " << b;
    }
  };
  check(forward(*m, ids.data(), B, T, nullptr, nullptr, LogitRows::Last), "no cache");
  KVCache cache(m->spec, B, T);
  check(forward(*m, ids.data(), B, T, &cache, nullptr, LogitRows::Last), "cache");
  // a 4-token prefix cached first, then the other 8 tokens of each sequence
  std::vector<int32_t> head, tail;
  for (int b = 0; b < B; b++) {
    head.insert(head.end(), ids.begin() + b * T, ids.begin() + b * T + 4);
    tail.insert(tail.end(), ids.begin() + b * T + 4, ids.begin() + (b + 1) * T);
  }
  KVCache c2(m->spec, B, T);
  EXPECT_EQ(forward(*m, head.data(), B, 4, &c2, nullptr, LogitRows::Last).size(), (size_t)B * V);
  check(forward(*m, tail.data(), B, T - 4, &c2, nullptr, LogitRows::Last), "after a cached prefix");
}

TEST(ForwardGolden, ValidationPerplexityMatchesGolden) {
  auto m = Model::open(test::tinyllama());
  auto summary = nlohmann::json::parse(read_file(test::golden("summary.json"), SIZE_MAX));
  std::string raw = read_file(test::golden("val_windows.i32"), SIZE_MAX);
  Windows w;
  w.ctx = 256;
  w.tokens.resize(raw.size() / 4);
  std::memcpy(w.tokens.data(), raw.data(), raw.size());
  ASSERT_EQ(w.n(), 64);
  EvalOptions opt;
  opt.progress = false;
  PplResult r = perplexity(*m, w, opt);
  double want = summary["val_ppl"].get<double>();
  EXPECT_NEAR(r.ppl, want, want * 1e-3);
  EXPECT_EQ(r.predicted, 64 * 255);
}

}  // namespace
}  // namespace kt
