// io/text: tokenize_file with a token budget returns exactly the first ids of the whole text
// (eval --max-windows K reads only what K windows need).
#include <gtest/gtest.h>

#include "io/text.h"
#include "io/tokenizer.h"
#include "test_util.h"

namespace kt {
namespace {

TEST(Text, TokenBudgetGivesThePrefixOfTheWholeText) {
  const std::string wiki = test::data() + "/text/wikitext2_raw_test.joined.txt";
  std::vector<std::unique_ptr<Tokenizer>> toks;
  toks.push_back(load_hf_tokenizer(test::tinyllama()));
  toks.push_back(load_tokenizer_json(test::data() + "/models/smollm2-135m-tokenizer/tokenizer.json"));
  for (auto& t : toks) {
    SCOPED_TRACE(t->kind());
    const std::vector<int32_t> full = tokenize_file(*t, wiki);
    ASSERT_GT(full.size(), 200000u);
    for (size_t k : {1ul, 777ul, 65536ul, 200000ul}) {
      const std::vector<int32_t> part = tokenize_file(*t, wiki, k);
      ASSERT_EQ(part.size(), k);
      EXPECT_TRUE(std::equal(part.begin(), part.end(), full.begin())) << "budget " << k;
    }
    EXPECT_EQ(tokenize_file(*t, wiki, full.size() * 2), full);  // a budget beyond the text: all of it
  }
}

}  // namespace
}  // namespace kt
