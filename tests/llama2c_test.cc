// aidreams260K (a real llama2.c checkpoint): greedy decoding from BOS must reproduce the
// golden ids listed in ../shared/data/SOURCES.md (from an independent numpy port of run.c).
#include <gtest/gtest.h>

#include "eval/generate.h"
#include "io/llama2c.h"
#include "test_util.h"

namespace kt {
namespace {

TEST(Llama2c, AidreamsGreedyMatchesGolden) {
  auto m = Model::open(test::data() + "/models/aidreams260K/aidreams260K.bin");
  EXPECT_EQ(m->spec.rope_style, RopeStyle::Interleaved);
  EXPECT_EQ(m->spec.hidden, 64);
  EXPECT_EQ(m->spec.ffn, 172);
  EXPECT_TRUE(m->spec.tie_embeddings);
  const std::vector<int>& golden = test::aidreams_golden_ids();
  GenOptions opt;
  opt.n_new = 40;
  opt.stop_at_eos = false;
  auto out = generate(*m, {1}, opt);
  EXPECT_EQ(out, golden);
  std::string text = m->tokenizer->decode(out);
  // SOURCES.md: the text starts with a '"' token; the leading space after BOS is stripped.
  EXPECT_EQ(text, "\"Echoes of vectors unfold, a gentle hum of precision, as I sense the nodes, a gentle hum of precision");
}

}  // namespace
}  // namespace kt
