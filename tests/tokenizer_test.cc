// Tokenizers against independent references: llama.cpp's test vectors (ggml-vocab-*.gguf.inp/.out),
// the golden ids of tinyllama-8m (made by the Python sentencepiece), and hand-checked SmolLM2 merges.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "io/gguf.h"
#include "io/tokenizer.h"
#include "test_util.h"

namespace kt {
namespace {

struct Vector {
  std::string text;
  std::vector<int> ids;
};

// llama.cpp's format: inputs separated by "\n__ggml_vocab_test__\n"; one line of ids per input.
std::vector<Vector> load_vectors(const std::string& gguf) {
  std::string inp = read_file(gguf + ".inp"), out = read_file(gguf + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos = 0;
  while (true) {
    size_t e = inp.find(sep, pos);
    if (e == std::string::npos) break;
    texts.push_back(inp.substr(pos, e - pos));
    pos = e + sep.size();
  }
  std::vector<Vector> v;
  std::istringstream lines(out);
  std::string line;
  for (auto& t : texts) {
    std::getline(lines, line);
    Vector x{t, {}};
    std::istringstream ids(line);
    int id;
    while (ids >> id) x.ids.push_back(id);
    v.push_back(x);
  }
  return v;
}

void check_vectors(const std::string& name) {
  std::string path = test::data() + "/models/ggml-vocab/" + name;
  GGUFFile f(path);
  auto tok = load_gguf_tokenizer(f);
  auto vecs = load_vectors(path);
  ASSERT_GE(vecs.size(), 40u);
  int failures = 0;
  for (auto& v : vecs) {
    auto got = tok->encode(v.text);
    EXPECT_EQ(got, v.ids) << "input: [" << v.text << "]";
    failures += got != v.ids;
  }
  EXPECT_EQ(failures, 0);
}

TEST(Tokenizer, LlamaSpmGgufMatchesLlamaCppVectors) { check_vectors("ggml-vocab-llama-spm.gguf"); }
TEST(Tokenizer, Gpt2GgufMatchesLlamaCppVectors) { check_vectors("ggml-vocab-gpt-2.gguf"); }

TEST(Tokenizer, GgufVocabMetadata) {
  GGUFFile f(test::data() + "/models/ggml-vocab/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.get("tokenizer.ggml.tokens").strs.size(), 32000u);
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id", -1), 1);
  EXPECT_EQ(f.get_string("general.architecture", ""), "llama");
  EXPECT_EQ(f.tensors().size(), 0u);
}

TEST(Tokenizer, SentencePieceMatchesGoldenIds) {
  auto tok = load_hf_tokenizer(test::tinyllama());
  auto ids = nlohmann::json::parse(read_file(test::golden("input_ids.json"))).get<std::vector<int>>();
  std::string text = read_file(test::golden("input_text.txt"));
  auto got = tok->encode_for_model(text);
  ASSERT_GE(got.size(), ids.size());
  EXPECT_EQ(std::vector<int>(got.begin(), got.begin() + ids.size()), ids);
  EXPECT_EQ(tok->bos, 1);
  EXPECT_TRUE(tok->add_bos);
}

TEST(Tokenizer, SentencePieceDecodeRoundTrip) {
  auto tok = load_hf_tokenizer(test::tinyllama());
  std::string s = "The kernel maps 4096 pages, then returns.";
  EXPECT_EQ(tok->decode(tok->encode_for_model(s)), s);
}

TEST(Tokenizer, SmolLM2RoundTripAndHandCheckedIds) {
  auto tok = load_hf_tokenizer(test::data() + "/models/smollm2-135m-tokenizer");
  EXPECT_EQ(tok->kind(), "byte-bpe");
  EXPECT_FALSE(tok->add_bos);  // post_processor is null: SmolLM2 adds no BOS
  for (std::string s : {"Hello world", "  leading spaces and\ttabs\n\nnew lines", "Ünïcödé ✓ 日本語 🦙",
                        "digits 1234567 split one by one"})
    EXPECT_EQ(tok->decode(tok->encode(s)), s) << s;
  // Traced by hand through tokenizer.json's merges: "Hello" = e+l (rank 47), el+l (226),
  // ell+o (10970), H+ello (19304) -> id 19556; "Ġworld" = Ġ+w (15), o+r (18), l+d (148),
  // Ġw+or (206), Ġwor+ld (653) -> id 905. Digits are split individually by the Digits
  // pre-tokenizer ("1" = 33, "2" = 34); added special tokens map to their ids.
  EXPECT_EQ(tok->encode("Hello world"), (std::vector<int>{19556, 905}));
  EXPECT_EQ(tok->encode("12"), (std::vector<int>{33, 34}));
  EXPECT_EQ(tok->encode("<|im_start|>"), (std::vector<int>{1}));
  // Special tokens are matched before pre-tokenization and skipped when decoding.
  auto chat = tok->encode("<|im_start|>user\nhi<|im_end|>");
  EXPECT_EQ(chat.front(), 1);
  EXPECT_EQ(chat.back(), 2);
  EXPECT_EQ(tok->decode(chat), "user\nhi");
}

TEST(Tokenizer, Llama2cTokenizerRoundTrip) {
  auto tok = load_llama2c_tokenizer(test::data() + "/models/aidreams260K/tok512.bin", 512);
  std::string s = "a gentle hum of precision";
  auto ids = tok->encode_for_model(s);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(tok->decode(ids), s);
}

}  // namespace
}  // namespace kt
