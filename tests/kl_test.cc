// KL against a reference: identical models give KL 0 and full agreement; the reference is
// evaluated at full precision even when the model under test uses a quantized KV cache.
#include <gtest/gtest.h>

#include "eval/kl.h"
#include "quant/recipe.h"
#include "test_util.h"

namespace kt {
namespace {

TEST(KL, SelfIsZeroAndReferenceStaysFullPrecision) {
  auto m = Model::open(test::tinyllama());
  auto toks = tokenize_file(*m->tokenizer, test::data() + "/text/wikitext2_raw_test.joined.txt");
  Windows w = make_windows(toks, 128, 3, "wikitext");
  EvalOptions eo;
  eo.progress = false;
  CompareResult self = compare_to_reference(*m, *m, w, eo);
  EXPECT_NEAR(self.mean_kl, 0.0, 1e-6);
  EXPECT_DOUBLE_EQ(self.top1, 1.0);
  EXPECT_NEAR(self.ppl, self.ref_ppl, 1e-9 * self.ppl);
  double fp_ppl = perplexity(*m, w, eo).ppl;
  EXPECT_NEAR(self.ref_ppl, fp_ppl, 1e-6 * fp_ppl);
  // model with an int4 KV cache: the reference perplexity must not change
  Recipe r;
  r.set_bits(16, 16, 4, m->spec.head_dim);
  OnlineCaps cache;
  cache.cache_quantizes_kv = true;
  Session h(*m, r, cache);
  ASSERT_TRUE(h.quantizes_kv_cache());
  CompareResult q = compare_to_reference(*m, h, w, eo);
  EXPECT_NEAR(q.ref_ppl, fp_ppl, 1e-6 * fp_ppl);
  EXPECT_GT(q.mean_kl, 1e-4);
  Session fake(*m, r);  // same quantization through the fake K/V quantizers
  CompareResult fq = compare_to_reference(*m, fake, w, eo);
  EXPECT_NEAR(q.mean_kl, fq.mean_kl, 1e-3 * fq.mean_kl);
}

}  // namespace
}  // namespace kt
