// io/text: tokenize_file with a token budget returns exactly the first ids of the whole text
// (eval --max-windows K reads only what K windows need).
#include <gtest/gtest.h>

#include "io/text.h"
#include "io/tokenizer.h"
#include "test_util.h"
#include "util/error.h"

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

// A cut before the space of "\xe1a a" is no boundary for a tokenizer that steps over the
// three bytes the lead byte claims (llama.cpp's score-merge SPM): found by fuzz_tokenize.
TEST(Text, StreamCutsNeverSplitWhatAnInvalidLeadByteClaims) {
  const std::string d = test::data() + "/models/";
  std::vector<std::unique_ptr<Tokenizer>> toks;
  toks.push_back(load_llama2c_tokenizer(d + "aidreams260K/tok512.bin", 512));
  toks.push_back(load_hf_tokenizer(test::tinyllama()));
  for (auto& t : toks)
    for (const std::string& text : {std::string("aa \xe1" "a a\x96\xdf\x0f" "aaa"), std::string("x \xf0" "ab cd ef"),
                                   std::string("q \xc3" "a b")}) {
      SCOPED_TRACE(t->kind() + ": " + printable(text));
      const auto whole = t->encode(text);
      for (size_t chunk : {1ul, 2ul, 3ul, 7ul}) EXPECT_EQ(t->encode(text, chunk), whole) << "chunk " << chunk;
    }
}

}  // namespace
}  // namespace kt
