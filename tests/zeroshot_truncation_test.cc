// Zero-shot items longer than the window are cut as lm-eval's HF loglikelihood cuts them:
// input = (context + continuation)[-(L+1):][:-1], the continuation scored on its last
// len(continuation) positions. Checked against a log-likelihood computed here by hand from the
// model's forward pass, and through the CLI (eval --task piqa --ctx 16).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/zeroshot.h"
#include "io/tokenizer.h"
#include "test_util.h"

namespace kt {
namespace {

// sum over t of log softmax(forward(inp))[t][target[t]] for the last `n` positions of inp
double hand_loglik(const Model& m, const std::vector<int>& inp, const std::vector<int>& targets) {
  std::vector<int32_t> ids(inp.begin(), inp.end());
  auto logits = forward(m, ids.data(), 1, (int)ids.size(), nullptr, nullptr);
  const int V = m.spec.vocab;
  double ll = 0;
  for (size_t k = 0; k < targets.size(); k++) {
    const size_t p = ids.size() - targets.size() + k;
    const float* r = logits.data() + p * V;
    double mx = r[0], s = 0;
    for (int j = 0; j < V; j++) mx = std::max(mx, (double)r[j]);
    for (int j = 0; j < V; j++) s += std::exp(r[j] - mx);
    ll += r[targets[k]] - mx - std::log(s);
  }
  return ll;
}

struct Split {
  std::vector<int> ctx, cont;
};
Split split(const Model& m, const std::string& context, const std::string& continuation) {
  auto c = m.tokenizer->encode_for_model(context);
  auto w = m.tokenizer->encode_for_model(context + continuation);
  return {std::vector<int>(w.begin(), w.begin() + c.size()), std::vector<int>(w.begin() + c.size(), w.end())};
}

TEST(ZeroShotTruncation, ItemsThatFitScoreAsWithTheFullContext) {
  auto m = Model::open(test::tinyllama());
  auto items = load_piqa(test::data() + "/tasks", 8);
  for (const MCItem& it : items)
    for (const std::string& ch : it.choices) {
      Split s = split(*m, it.context, ch);
      const int exact = (int)(s.ctx.size() + s.cont.size()) - 1;  // the window that just fits
      int n_full = 0, n_fit = 0;
      bool tr_full = true, tr_fit = true;
      double full = continuation_loglik(*m, it.context, ch, &n_full, 0, &tr_full);
      double fit = continuation_loglik(*m, it.context, ch, &n_fit, exact, &tr_fit);
      EXPECT_FALSE(tr_full);
      EXPECT_FALSE(tr_fit);
      EXPECT_EQ(n_full, (int)s.cont.size());
      EXPECT_EQ(n_fit, (int)s.cont.size());
      EXPECT_NEAR(full, fit, 1e-4 * std::fabs(full));
      // and both equal the hand computation on the untruncated input
      std::vector<int> all(s.ctx);
      all.insert(all.end(), s.cont.begin(), s.cont.end());
      all.pop_back();
      EXPECT_NEAR(full, hand_loglik(*m, all, s.cont), 1e-4 * std::fabs(full));
    }
}

TEST(ZeroShotTruncation, LongItemsKeepTheWholeContinuation) {
  auto m = Model::open(test::tinyllama());
  auto items = load_piqa(test::data() + "/tasks", 6);
  int checked = 0;
  for (const MCItem& it : items)
    for (const std::string& ch : it.choices) {
      Split s = split(*m, it.context, ch);
      const int L = (int)s.cont.size() + 3;  // input: the last 4 context tokens + the continuation but its last
      if ((int)(s.ctx.size() + s.cont.size()) <= L + 1) continue;
      int n = 0;
      bool tr = false;
      double got = continuation_loglik(*m, it.context, ch, &n, L, &tr);
      EXPECT_TRUE(tr);
      EXPECT_EQ(n, (int)s.cont.size());  // every continuation token, not only the last
      std::vector<int> inp(s.ctx.end() - 4, s.ctx.end());
      inp.insert(inp.end(), s.cont.begin(), s.cont.end() - 1);
      ASSERT_EQ((int)inp.size(), L);
      double want = hand_loglik(*m, inp, s.cont);
      EXPECT_NEAR(got, want, 1e-4 * std::fabs(want));
      // the cut is real: with the whole context the score differs
      EXPECT_GT(std::fabs(got - continuation_loglik(*m, it.context, ch)), 1e-3);
      checked++;
    }
  EXPECT_GE(checked, 8);
}

TEST(ZeroShotTruncation, AContinuationLongerThanTheWindowLosesItsOwnFirstTokens) {
  auto m = Model::open(test::tinyllama());
  const std::string ctx = "The kernel", cont = " documentation is available in the source tree of the project.";
  Split s = split(*m, ctx, cont);
  const int L = (int)s.cont.size() - 2;
  ASSERT_GE(L, 4);
  int n = 0;
  bool tr = false;
  double got = continuation_loglik(*m, ctx, cont, &n, L, &tr);
  EXPECT_TRUE(tr);
  EXPECT_EQ(n, L);
  std::vector<int> all(s.ctx);
  all.insert(all.end(), s.cont.begin(), s.cont.end());
  std::vector<int> inp(all.end() - (L + 1), all.end() - 1), targets(all.end() - L, all.end());
  EXPECT_NEAR(got, hand_loglik(*m, inp, targets), 1e-4 * std::fabs(got));
}

double json_number(const std::string& out, const char* key) { return nlohmann::json::parse(out)[key].get<double>(); }

TEST(ZeroShotTruncation, CliWithATinyContext) {
  // the model's full window and a window every item fits in give the same result
  test::CmdResult full = test::run_cli("eval --task piqa --limit 12 --json -q");
  test::CmdResult wide = test::run_cli("eval --task piqa --limit 12 --json -q --ctx 200");
  ASSERT_EQ(full.code, 0) << full.err;
  ASSERT_EQ(wide.code, 0) << wide.err;
  EXPECT_EQ(json_number(wide.out, "truncated_items"), 0);
  EXPECT_EQ(json_number(full.out, "acc"), json_number(wide.out, "acc"));
  EXPECT_EQ(json_number(full.out, "acc_norm"), json_number(wide.out, "acc_norm"));
  // --ctx 16: most items are cut; they are scored on their whole continuation (before the
  // fix only the last token counted, which made acc 0 and acc_norm 1 on such a set)
  test::CmdResult tiny = test::run_cli("eval --task piqa --limit 12 --json -q --ctx 16");
  ASSERT_EQ(tiny.code, 0) << tiny.err;
  EXPECT_GT(json_number(tiny.out, "truncated_items"), 6);
  EXPECT_EQ(json_number(tiny.out, "ctx"), 16);
  test::CmdResult text = test::run_cli("eval --task piqa --limit 12 -q --ctx 16");
  ASSERT_EQ(text.code, 0) << text.err;
  const std::string note = "items longer than the context of 16 tokens: context cut on the left (as lm-eval)";
  EXPECT_NE(text.out.find(note), std::string::npos) << text.out;
  static const std::string doc = read_file(std::string(KURTAIL_SOURCE_DIR) + "/docs/ERRORS.md", SIZE_MAX);
  EXPECT_NE(doc.find(note), std::string::npos);
}

}  // namespace
}  // namespace kt
