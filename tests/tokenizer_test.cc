// Tokenizers against independent references: llama.cpp's test vectors (ggml-vocab-*.gguf.inp/.out),
// the golden ids of tinyllama-8m (made by the Python sentencepiece), and hand-checked SmolLM2 merges.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

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
  std::string inp = read_file(gguf + ".inp", SIZE_MAX), out = read_file(gguf + ".out", SIZE_MAX);
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
  auto ids = nlohmann::json::parse(read_file(test::golden("input_ids.json"), SIZE_MAX)).get<std::vector<int>>();
  std::string text = read_file(test::golden("input_text.txt"), SIZE_MAX);
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

namespace kt {
namespace {

// A Llama-2 style tokenizer.json (normalizer Prepend U+2581 + Replace " ", BPE with byte
// fallback) made from a SentencePiece vocabulary the way HF's converter does it: every piece
// that splits into two vocabulary pieces gives a merge, ranked by the piece's score.
std::string spm_tokenizer_json(const VocabExport& v) {
  std::unordered_map<std::string, int> id;
  for (size_t i = 0; i < v.tokens.size(); i++) id.emplace(v.tokens[i], (int)i);
  std::vector<int> order(v.tokens.size());
  for (size_t i = 0; i < order.size(); i++) order[i] = (int)i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return v.scores[a] > v.scores[b]; });
  nlohmann::json merges = nlohmann::json::array();
  for (int p : order) {
    if (v.types[p] != 1) continue;
    const std::string& s = v.tokens[p];
    std::vector<std::pair<int, int>> local;
    for (size_t k = 1; k < s.size(); k++) {
      if (((unsigned char)s[k] & 0xC0) == 0x80) continue;  // not a character boundary
      auto l = id.find(s.substr(0, k)), r = id.find(s.substr(k));
      if (l != id.end() && r != id.end() && v.types[l->second] == 1 && v.types[r->second] == 1)
        local.emplace_back(l->second, r->second);
    }
    std::sort(local.begin(), local.end());
    for (auto [l, r] : local) merges.push_back(v.tokens[l] + " " + v.tokens[r]);
  }
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (size_t i = 0; i < v.tokens.size(); i++) {
    vocab[v.tokens[i]] = i;
    if (v.types[i] == 2 || v.types[i] == 3)
      added.push_back({{"id", i}, {"content", v.tokens[i]}, {"special", true}});
  }
  nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}}},
      {"pre_tokenizer", nullptr},
      {"model",
       {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true}, {"vocab", vocab},
        {"merges", merges}}}};
  return j.dump();
}

TEST(Tokenizer, SentencePieceStyleTokenizerJsonMatchesLlamaCppVectors) {
  // llama.cpp's Llama SPM vocabulary as an HF tokenizer.json: the BPE-with-byte-fallback path
  // must reproduce llama.cpp's reference ids.
  std::string path = test::data() + "/models/ggml-vocab/ggml-vocab-llama-spm.gguf";
  VocabExport v;
  ASSERT_TRUE(load_gguf_tokenizer(GGUFFile(path))->export_vocab(&v));
  std::string dir = test::temp_dir("tj");
  write_file_atomic(dir + "/tokenizer.json", spm_tokenizer_json(v));
  auto tok = load_tokenizer_json(dir + "/tokenizer.json");
  EXPECT_EQ(tok->kind(), "spm-bpe");
  int failures = 0;
  for (auto& vec : load_vectors(path)) {
    auto got = tok->encode(vec.text);
    EXPECT_EQ(got, vec.ids) << "input: [" << vec.text << "]";
    failures += got != vec.ids;
    if (failures > 5) break;
  }
}

TEST(Tokenizer, SentencePieceStyleTokenizerJsonMatchesSentencePieceOnText) {
  auto sp = load_sentencepiece(test::tinyllama() + "/tokenizer.model");
  VocabExport v;
  ASSERT_TRUE(sp->export_vocab(&v));
  std::string dir = test::temp_dir("tj");
  write_file_atomic(dir + "/tokenizer.json", spm_tokenizer_json(v));
  auto tj = load_tokenizer_json(dir + "/tokenizer.json");
  std::string text = read_file(test::data() + "/text/wikitext2_raw_test.joined.txt", SIZE_MAX).substr(0, 60000);
  std::istringstream lines(text);
  std::string line;
  int n = 0;
  while (std::getline(lines, line) && n < 400) {
    if (line.empty()) continue;
    n++;
    auto a = sp->encode(line), b = tj->encode(line);
    ASSERT_EQ(b, a) << "line: [" << line << "]";
    EXPECT_EQ(tj->decode(b), line);
  }
  // byte fallback: a character outside the 8192-piece vocabulary
  auto a = sp->encode("emoji \xf0\x9f\x98\x80 and \xe6\xbc\xa2\xe5\xad\x97"), b = tj->encode("emoji \xf0\x9f\x98\x80 and \xe6\xbc\xa2\xe5\xad\x97");
  EXPECT_EQ(b, a);
}

}  // namespace
}  // namespace kt
