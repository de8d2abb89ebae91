// Tokenizer and text files a user (or an attacker) hands kurtail, through the real binary:
// one clear line naming the file and the first bad entry, exit 1 (docs/ERRORS.md rows), and
// the structural fixes behind them (issue #13, classes 4, 5, 6 and 8).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "io/tokenizer.h"
#include "test_util.h"

namespace kt {
namespace {

using json = nlohmann::json;

// tinyllama-8m's config and weights with `tokenizer_json` as its only tokenizer.
std::string model_with_tokenizer_json(const std::string& tokenizer_json) {
  std::string dir = test::temp_dir("tokjson");
  write_file_atomic(dir + "/config.json", read_file(test::tinyllama() + "/config.json", SIZE_MAX));
  symlink((test::tinyllama() + "/model.safetensors").c_str(), (dir + "/model.safetensors").c_str());
  if (!tokenizer_json.empty()) write_file_atomic(dir + "/tokenizer.json", tokenizer_json);
  return dir;
}

std::string eval_args(const std::string& model, const std::string& text = "") {
  return "eval -q --max-windows 1 --ctx 64 --model '" + model + "'" + (text.empty() ? "" : " --text '" + text + "'");
}

// A small byte-level tokenizer.json; `edit` changes it before it is written.
std::string byte_level_json(const std::function<void(json&)>& edit) {
  json j = {{"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
            {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"\xc4\xa0", 3}}}, {"merges", {"a b"}}}}};
  edit(j);
  return j.dump();
}

void expect_tokenizer_error(const std::string& tokenizer_json, const std::string& must_contain) {
  auto r = test::run_cli(eval_args(model_with_tokenizer_json(tokenizer_json)));
  test::expect_documented_error(r, must_contain);
  EXPECT_NE(r.err.find("tokenizer.json: "), std::string::npos) << r.err;  // names the file
}

// ---- size bombs and recursion (class 4) ----

TEST(TokenizerFiles, HugeTokenIdIsRefusedBeforeAnyTableIsMade) {
  // 90 bytes that used to size an id table by the id (16M strings, ~600 MB).
  const std::string bomb = R"({"pre_tokenizer":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":16777215},"merges":[]}})";
  expect_tokenizer_error(bomb, "vocab id 16777215 of 'a' is out of range (the file has 1 vocab entries and 0 added tokens)");
  expect_tokenizer_error(byte_level_json([](json& j) {
                           j["added_tokens"] = {{{"id", 2000000000}, {"content", "<x>"}}};
                         }),
                         "added token id 2000000000 of '<x>' is out of range");
}

TEST(TokenizerFiles, DeeplyNestedPreTokenizersAreWalkedWithoutRecursion) {
  // 25 nested Sequences (50 JSON levels, under the parser's cap of 64) still load and
  // tokenize like a flat one.
  json pt = {{"type", "ByteLevel"}, {"add_prefix_space", false}};
  for (int i = 0; i < 25; i++) pt = {{"type", "Sequence"}, {"pretokenizers", {pt}}};
  std::string dir = test::temp_dir("nest");
  write_file_atomic(dir + "/deep.json", byte_level_json([&](json& j) { j["pre_tokenizer"] = pt; }));
  write_file_atomic(dir + "/flat.json", byte_level_json([](json&) {}));
  EXPECT_EQ(load_tokenizer_json(dir + "/deep.json")->encode("ab ba abab"),
            load_tokenizer_json(dir + "/flat.json")->encode("ab ba abab"));
  // Far deeper nesting is refused by the parser with one line.
  std::string deep = R"({"pre_tokenizer":)";
  for (int i = 0; i < 5000; i++) deep += R"({"type":"Sequence","pretokenizers":[)";
  deep += "{}";
  for (int i = 0; i < 5000; i++) deep += "]}";
  deep += R"(,"model":{"type":"BPE","vocab":{"a":0},"merges":[]}})";
  expect_tokenizer_error(deep, "JSON nested deeper than 64 levels");
}

// ---- ambiguous files (class 8) ----

TEST(TokenizerFiles, MergesMustNameVocabTokens) {
  expect_tokenizer_error(byte_level_json([](json& j) { j["model"]["merges"] = {"a b", "a zz"}; }),
                         "merge 1 'a zz' names 'zz', which is not in the vocab");
  expect_tokenizer_error(byte_level_json([](json& j) { j["model"]["merges"] = {"b a"}; }),
                         "merge 0 'b a' makes 'ba', which is not in the vocab");
  // untrusted token text is escaped: no raw escape sequence reaches the terminal
  auto r = test::run_cli(eval_args(model_with_tokenizer_json(
      byte_level_json([](json& j) { j["model"]["merges"] = {"a \x1b[32mok"}; }))));
  test::expect_documented_error(r, "names '\\x1b[32mok', which is not in the vocab");
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  expect_tokenizer_error(byte_level_json([](json& j) { j["model"]["merges"] = {"ab"}; }),
                         "merge 0 'ab' is not two tokens separated by one space");
}

TEST(TokenizerFiles, ByteFallbackNeedsTheByteTokens) {
  json j = {{"normalizer",
             {{"type", "Sequence"},
              {"normalizers",
               {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
                {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}}},
            {"model", {{"type", "BPE"}, {"byte_fallback", true}, {"vocab", {{"<unk>", 0}, {"a", 1}}}, {"merges", json::array()}}}};
  expect_tokenizer_error(j.dump(), "byte_fallback is set but the vocab has no '<0x00>' token");
}

TEST(TokenizerFiles, DuplicateIdsAreRefused) {
  expect_tokenizer_error(byte_level_json([](json& j) { j["model"]["vocab"]["b"] = 0; }),
                         "vocab gives id 0 to both 'a' and 'b'");
  expect_tokenizer_error(byte_level_json([](json& j) {
                           j["added_tokens"] = {{{"id", 0}, {"content", "<s>"}, {"special", true}}};
                         }),
                         "added token '<s>' has id 0, which the vocab gives to 'a'");
  expect_tokenizer_error(byte_level_json([](json& j) {
                           j["added_tokens"] = {{{"id", 4}, {"content", "<s>"}}, {{"id", 4}, {"content", "</s>"}}};
                         }),
                         "added_tokens give id 4 twice");
  // duplicate tokens are duplicate JSON keys: the parser refuses them
  std::string dup = R"({"pre_tokenizer":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":0,"a":1},"merges":[]}})";
  expect_tokenizer_error(dup, "duplicate JSON key 'a'");
}

// ---- inputs that are not regular files (class 5) ----

TEST(TokenizerFiles, FifoAndDevZeroAreRefusedAsTextAndTokenizer) {
  std::string dir = test::temp_dir("fifo");
  std::string fifo = dir + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string msg = "not a regular file (a FIFO, socket or device cannot be read as input)";
  // --text, --calib, --tokenizer (tokenizer.model), a FIFO named tokenizer.json beside the model
  for (std::string args : {eval_args(test::tinyllama(), fifo), eval_args(test::tinyllama(), "/dev/zero"),
                           "analyze --model '" + test::tinyllama() + "' --calib '" + fifo + "'",
                           eval_args(test::tinyllama()) + " --tokenizer '" + fifo + "'"}) {
    auto r = test::run_cli(args, "timeout 60");  // a blocking read would hang: timeout makes it a failure, not a hang
    test::expect_documented_error(r, msg);
  }
  std::string m = model_with_tokenizer_json("");
  ASSERT_EQ(mkfifo((m + "/tokenizer.json").c_str(), 0600), 0);
  auto r = test::run_cli(eval_args(m), "timeout 60");
  test::expect_documented_error(r, msg);
  EXPECT_NE(r.err.find("tokenizer.json"), std::string::npos) << r.err;
}

// ---- slow paths and Ctrl-C (class 6) ----

TEST(TokenizerFiles, CtrlCStopsTokenizingALargeText) {
  // 64 MB of text takes many seconds to tokenize: SIGINT after 2 s must stop it cleanly.
  std::string dir = test::temp_dir("bigtext");
  std::string wiki = read_file(test::data() + "/text/wikitext2_raw_test.joined.txt", SIZE_MAX), big;
  while (big.size() < (64u << 20)) big += wiki;
  write_file_atomic(dir + "/big.txt", big);
  // (no --max-windows: with it, eval reads only what the windows need and ends before the signal)
  auto r = test::run_cli("eval -q --ctx 64 --model '" + test::tinyllama() + "' --text '" + dir + "/big.txt'",
                         "timeout --preserve-status -s INT 2");
  test::expect_documented_error(r, "interrupted by SIGINT; stopped before writing any output", 130);
  unlink((dir + "/big.txt").c_str());
}

// Invalid UTF-8 in a text is reported against the text file, with its offset.
TEST(TokenizerFiles, InvalidUtf8TextNamesTheFile) {
  std::string dir = test::temp_dir("utf8");
  write_file_atomic(dir + "/bad.txt", "hello \xff world");
  std::string m = model_with_tokenizer_json(byte_level_json([](json&) {}));
  auto r = test::run_cli(eval_args(m, dir + "/bad.txt"));
  test::expect_documented_error(r, "tokenizer: input text is not valid UTF-8 (byte 6)");
  EXPECT_NE(r.err.find("bad.txt: "), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kt
