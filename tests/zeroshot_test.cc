// Zero-shot scoring: PIQA parsing, the lm-eval scoring rules, and a sanity task the proxy
// model must get right (real text vs the same words shuffled).
#include <gtest/gtest.h>

#include <cmath>

#include "eval/zeroshot.h"
#include "quant/recipe.h"
#include "test_util.h"

namespace kt {
namespace {

TEST(ZeroShot, PiqaLoadsAllItemsWithLmEvalPrompt) {
  auto items = load_piqa(test::data() + "/tasks", 0);
  ASSERT_EQ(items.size(), 1838u);
  EXPECT_EQ(items[0].context.rfind("Question: ", 0), 0u);
  EXPECT_EQ(items[0].context.substr(items[0].context.size() - 8), "\nAnswer:");
  ASSERT_EQ(items[0].choices.size(), 2u);
  EXPECT_EQ(items[0].choices[0][0], ' ');
  int ones = 0;
  for (auto& it : items) ones += it.label;
  EXPECT_GT(ones, 800);
  EXPECT_LT(ones, 1038);
}

TEST(ZeroShot, LoglikIsConditionalOnContext) {
  auto m = Model::open(test::tinyllama());
  int n = 0;
  double a = continuation_loglik(*m, "The Linux kernel", " documentation describes the", &n);
  EXPECT_GT(n, 0);
  EXPECT_LT(a, 0);
  // log p(c | ctx) + log p(ctx) == log p(ctx + c) when the token split is clean
  double ctx_only = continuation_loglik(*m, "", "The Linux kernel");
  double whole = continuation_loglik(*m, "", "The Linux kernel documentation describes the");
  EXPECT_NEAR(ctx_only + a, whole, 1e-3);
}

TEST(ZeroShot, PicksRealTextOverShuffledWordsAndStderr) {
  auto m = Model::open(test::tinyllama());
  std::vector<MCItem> items;
  const char* pairs[][3] = {
      {"The kernel", " documentation is available in the source tree.", " tree source is the documentation in available."},
      {"Python is a", " programming language that lets you work quickly.", " quickly language lets that programming you work."},
      {"To install the package,", " run the following command as root.", " root following the command run as."},
      {"The file system", " must be mounted before it can be used.", " before mounted be used it must can be."}};
  int i = 0;
  for (auto& p : pairs) {
    MCItem it;
    it.context = p[0];
    bool flip = (i++ % 2) == 1;  // put the right answer in both positions
    it.choices = flip ? std::vector<std::string>{p[2], p[1]} : std::vector<std::string>{p[1], p[2]};
    it.label = flip ? 1 : 0;
    items.push_back(it);
  }
  MCResult r = eval_multiple_choice(*m, items, "sanity", false);
  EXPECT_EQ(r.n, 4);
  EXPECT_DOUBLE_EQ(r.acc, 1.0);
  EXPECT_DOUBLE_EQ(r.acc_stderr, 0.0);
  for (auto& it : items) it.label = 1 - it.label;
  MCResult w = eval_multiple_choice(*m, items, "sanity", false);
  EXPECT_DOUBLE_EQ(w.acc, 0.0);
  // p = 0.5 over n = 4 -> sqrt(0.25 / 3)
  items[0].label = 1 - items[0].label;
  items[1].label = 1 - items[1].label;
  MCResult h = eval_multiple_choice(*m, items, "sanity", false);
  EXPECT_DOUBLE_EQ(h.acc, 0.5);
  EXPECT_NEAR(h.acc_stderr, std::sqrt(0.25 / 3), 1e-12);
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

// A continuation scored through the int4 KV cache equals the fake-quantized K/V score.
TEST(ZeroShot, QuantizedCacheScoresLikeFakeQuantKV) {
  auto m = Model::open(test::tinyllama());
  Recipe r;
  r.set_bits(16, 16, 4, m->spec.head_dim);
  OnlineCaps cache;
  cache.cache_quantizes_kv = true;
  Session fake(*m, r), real(*m, r, cache);
  ASSERT_TRUE(real.quantizes_kv_cache());
  double a = continuation_loglik(fake, "The kernel", " documentation is in the tree.");
  double b = continuation_loglik(real, "The kernel", " documentation is in the tree.");
  double fp = continuation_loglik(*m, "The kernel", " documentation is in the tree.");
  EXPECT_NEAR(a, b, 1e-4 * std::fabs(a));
  EXPECT_GT(std::fabs(a - fp), 1e-4);  // and the KV quantization is really applied
}

}  // namespace
}  // namespace kt
