// The two perplexity protocols (eval/perplexity.h): kurtail's (every position of every window)
// and llama-perplexity's (BOS as the first token of each chunk, only the second half scored),
// against a direct computation written here from llama.cpp's description: for each chunk,
// replace token 0 by BOS, run it, and average -log softmax(logits[j])[tok[j+1]] over
// j = ctx/2 .. ctx-2.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "io/text.h"
#include "model/forward.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

double direct_llamacpp_ppl(const Model& m, const std::vector<int32_t>& toks, int ctx, int nchunks) {
  double nll = 0;
  int64_t count = 0;
  for (int c = 0; c < nchunks; c++) {
    std::vector<int32_t> chunk(toks.begin() + (int64_t)c * ctx, toks.begin() + (int64_t)(c + 1) * ctx);
    chunk[0] = m.spec.bos_id;
    const auto logits = forward(m, chunk.data(), 1, ctx, nullptr, nullptr);
    for (int j = ctx / 2; j < ctx - 1; j++) {
      const float* r = logits.data() + (int64_t)j * m.spec.vocab;
      double mx = r[0], s = 0;
      for (int v = 0; v < m.spec.vocab; v++) mx = std::max(mx, (double)r[v]);
      for (int v = 0; v < m.spec.vocab; v++) s += std::exp((double)r[v] - mx);
      nll += std::log(s) + mx - r[chunk[j + 1]];
      count++;
    }
  }
  return std::exp(nll / count);
}

TEST(PplProtocol, LlamaCppScoresTheSecondHalfOfEachChunkAfterBos) {
  auto m = Model::open(test::tinyllama());
  auto toks = tokenize_file(*m->tokenizer, test::data() + "/text/wikitext2_raw_test.joined.txt", 4 * 128);
  const int ctx = 128;
  Windows w = make_windows(toks, ctx, 4, "text");
  Windows wl = w;
  llamacpp_windows(wl, m->spec.bos_id, "text");
  for (int i = 0; i < wl.n(); i++) EXPECT_EQ(wl.window(i)[0], m->spec.bos_id);
  EvalOptions eo;
  eo.progress = false;
  eo.protocol = PplProtocol::LlamaCpp;
  const PplResult r = perplexity(Session(*m), wl, eo);
  EXPECT_EQ(r.predicted, 4 * (ctx - 1 - ctx / 2));
  const double want = direct_llamacpp_ppl(*m, toks, ctx, 4);
  EXPECT_LT(std::fabs(r.ppl / want - 1), 1e-5) << r.ppl << " vs " << want;
  // the kurtail protocol scores every position of the unmodified windows: another number
  eo.protocol = PplProtocol::Kurtail;
  const PplResult k = perplexity(Session(*m), w, eo);
  EXPECT_EQ(k.predicted, 4 * (ctx - 1));
  EXPECT_GT(std::fabs(k.ppl / r.ppl - 1), 1e-3);
}

TEST(PplProtocol, LlamaCppNeedsTwoChunks) {
  Windows w;
  w.ctx = 8;
  w.tokens.assign(8, 5);
  try {
    llamacpp_windows(w, 1, "t.txt");
    ADD_FAILURE() << "one chunk accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at least 2 windows"), std::string::npos) << e.what();
  }
}

// The CLI: `eval --ppl-protocol llama.cpp` reports the protocol and the half-chunk count, and
// refuses --kl-ref with it.
TEST(PplProtocol, CliReportsTheProtocolAndRefusesKlWithIt) {
  const std::string text = test::data() + "/text/wikitext2_raw_test.joined.txt";
  auto r = test::run_cli("eval -q --json --ctx 64 --max-windows 3 --ppl-protocol llama.cpp --text " + text);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ppl_protocol"], "llama.cpp");
  EXPECT_EQ(j["predicted_tokens"], 3 * (64 - 1 - 32));
  r = test::run_cli("eval -q --ctx 64 --max-windows 3 --ppl-protocol llama.cpp --kl-ref " + test::tinyllama() + " --text " + text);
  test::expect_documented_error(r, "--ppl-protocol llama.cpp scores perplexity only");
}

}  // namespace
}  // namespace kt
