// Tokenizers against independent references: llama.cpp's test vectors (ggml-vocab-*.gguf.inp/.out),
// the golden ids of tinyllama-8m (made by the Python sentencepiece), and hand-checked SmolLM2 merges.
#include <gtest/gtest.h>

#include <climits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <unordered_map>

#include "eval/perplexity.h"
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

// ---- streaming, BPE and added tokens (issue #13: slow paths and bounded memory) ----
namespace kt {
namespace {

std::string wikitext() { return read_file(test::data() + "/text/wikitext2_raw_test.joined.txt", SIZE_MAX); }

// Every tokenizer kind cuts its text only where the ids cannot change: encoding WikiText-2 whole
// (one part), in 777-byte blocks (cuts everywhere, blocks ending inside UTF-8 characters) and
// through tokenize_file (the streamed reader) gives the same ids. (bench/tokenize_throughput.sh
// also hashes the ids of the whole file: they equal those of the code before streaming.)
void expect_chunking_invisible(const Tokenizer& tok, const std::string& text) {
  auto whole = tok.encode(text, SIZE_MAX);
  ASSERT_GT(whole.size(), text.size() / 8) << tok.kind();
  EXPECT_EQ(tok.encode(text, 777), whole) << tok.kind();
  auto file = tokenize_file(tok, test::data() + "/text/wikitext2_raw_test.joined.txt");
  if (tok.add_bos && tok.bos >= 0) {
    ASSERT_EQ(file.front(), tok.bos);
    file.erase(file.begin());
  }
  EXPECT_EQ(file, whole) << tok.kind();
}

TEST(TokenizerStream, SentencePieceModelIdsDoNotDependOnChunking) {
  expect_chunking_invisible(*load_sentencepiece(test::tinyllama() + "/tokenizer.model"), wikitext());
}
TEST(TokenizerStream, ByteLevelBpeIdsDoNotDependOnChunking) {
  expect_chunking_invisible(*load_tokenizer_json(test::data() + "/models/smollm2-135m-tokenizer/tokenizer.json"), wikitext());
  expect_chunking_invisible(*load_gguf_tokenizer(GGUFFile(test::data() + "/models/ggml-vocab/ggml-vocab-gpt-2.gguf")),
                            wikitext());
}
TEST(TokenizerStream, ScoreMergeSpmIdsDoNotDependOnChunking) {
  expect_chunking_invisible(*load_llama2c_tokenizer(test::data() + "/models/aidreams260K/tok512.bin", 512), wikitext());
  expect_chunking_invisible(*load_gguf_tokenizer(GGUFFile(test::data() + "/models/ggml-vocab/ggml-vocab-llama-spm.gguf")),
                            wikitext());
}
TEST(TokenizerStream, SentencePieceStyleTokenizerJsonIdsDoNotDependOnChunking) {
  VocabExport v;
  ASSERT_TRUE(load_sentencepiece(test::tinyllama() + "/tokenizer.model")->export_vocab(&v));
  std::string dir = test::temp_dir("tj");
  write_file_atomic(dir + "/tokenizer.json", spm_tokenizer_json(v));
  expect_chunking_invisible(*load_tokenizer_json(dir + "/tokenizer.json"), wikitext());
}

// The BPE kurtail had before the heap: find the best-ranked pair, merge all its occurrences
// left to right, repeat (quadratic; fine for a few thousand bytes).
std::vector<int> naive_byte_bpe(const nlohmann::json& tj, const std::string& word) {
  std::string enc[256];
  int n = 0;
  for (int b = 0; b < 256; b++) {
    bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    uint32_t cp = keep ? b : 256 + n++;
    enc[b] = cp < 0x80 ? std::string(1, (char)cp) : std::string{(char)(0xc0 | (cp >> 6)), (char)(0x80 | (cp & 0x3f))};
  }
  std::unordered_map<std::string, int> rank;
  int r = 0;
  for (auto& m : tj["model"]["merges"]) rank.emplace(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>(), r++);
  std::vector<std::string> sym;
  for (unsigned char b : word) sym.push_back(enc[b]);
  while (sym.size() > 1) {
    int best = INT_MAX;
    size_t at = 0;
    for (size_t i = 0; i + 1 < sym.size(); i++) {
      auto it = rank.find(sym[i] + " " + sym[i + 1]);
      if (it != rank.end() && it->second < best) best = it->second, at = i;
    }
    if (best == INT_MAX) break;
    std::string a = sym[at], b = sym[at + 1];
    std::vector<std::string> ns;
    for (size_t i = 0; i < sym.size();) {
      if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) ns.push_back(a + b), i += 2;
      else ns.push_back(sym[i++]);
    }
    sym.swap(ns);
  }
  std::vector<int> ids;
  for (auto& s : sym) ids.push_back(tj["model"]["vocab"][s].get<int>());
  return ids;
}

TEST(TokenizerStream, HeapBpeMatchesTheOldMergeLoopOnLongWords) {
  const std::string path = test::data() + "/models/smollm2-135m-tokenizer/tokenizer.json";
  auto tok = load_tokenizer_json(path);
  auto tj = nlohmann::json::parse(read_file(path, SIZE_MAX));
  std::string letters;
  for (char c : wikitext().substr(0, 20000))
    if (std::isalpha((unsigned char)c)) letters += c;
  for (std::string w : {letters.substr(0, 3000), std::string(1000, 'a'), std::string(999, 'e') + "llo",
                        std::string("abab") + std::string(600, 'b') + "ababab"})
    EXPECT_EQ(tok->encode(w), naive_byte_bpe(tj, w)) << w.substr(0, 40);
}

// Added tokens: one automaton must give exactly the old loop's leftmost-longest matches.
TEST(TokenizerStream, ThousandsOfAddedTokensMatchLeftmostLongest) {
  nlohmann::json vocab = nlohmann::json::object(), added = nlohmann::json::array();
  for (std::string s : {"a", "b", "c", " ", "\xc4\xa0"}) vocab[s] = vocab.size();
  std::mt19937 rng(7);
  std::vector<std::string> contents;
  std::set<std::string> seen;
  while (contents.size() < 3000) {
    std::string s;
    int len = 1 + rng() % 7;
    for (int k = 0; k < len; k++) s += "abc"[rng() % 3];
    if (len == 1 || !seen.insert(s).second) continue;
    contents.push_back(s);
    added.push_back({{"id", vocab.size() + contents.size() - 1}, {"content", s}, {"special", true}});
  }
  nlohmann::json j = {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}},
                      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
                      {"added_tokens", added}};
  // byte-level needs the byte symbols it maps to; absent ones are dropped (as HF does), so
  // only a, b, c, space (Ġ) matter here
  std::string dir = test::temp_dir("added");
  write_file_atomic(dir + "/tokenizer.json", j.dump());
  auto tok = load_tokenizer_json(dir + "/tokenizer.json");
  std::string text;
  for (int i = 0; i < 20000; i++) text += "abc  "[rng() % 5];
  // the old loop
  std::vector<int> want;
  size_t pos = 0, last = 0;
  auto plain = [&](size_t b, size_t e) {
    auto ids = tok->encode(text.substr(b, e - b));  // a plain stretch contains no match
    want.insert(want.end(), ids.begin(), ids.end());
  };
  while (pos < text.size()) {
    int hit = -1;
    for (size_t k = 0; k < contents.size(); k++)
      if (text.compare(pos, contents[k].size(), contents[k]) == 0 && (hit < 0 || contents[k].size() > contents[hit].size()))
        hit = (int)k;
    if (hit < 0) {
      pos++;
      continue;
    }
    if (pos > last) plain(last, pos);
    want.push_back((int)vocab.size() + hit);
    pos += contents[hit].size();
    last = pos;
  }
  if (last < text.size()) plain(last, text.size());
  EXPECT_EQ(tok->encode(text), want);
  EXPECT_EQ(tok->encode(text, 13), want);
}

}  // namespace
}  // namespace kt
