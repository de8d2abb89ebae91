// Score-merge SentencePiece-BPE over a plain vocabulary (text, score, type), as llama.cpp
// (llm_tokenizer_spm) and llama2.c (run.c encode) do it: split into UTF-8 characters, then
// repeatedly merge the adjacent pair whose concatenation is a token with the highest score
// (ties: leftmost), then fall back to <0xXX> byte tokens for characters not in the vocab.
#include <cstring>
#include <queue>
#include <unordered_map>

#include "io/gguf.h"
#include "io/tokenizer.h"
#include "io/tokenizer_stream.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/file.h"

namespace kt {

namespace {

size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xe) return 3;
  if ((c >> 3) == 0x1e) return 4;
  return 1;  // invalid lead byte: treat as a single byte
}

class ScoreSpmTokenizer : public Tokenizer {
 public:
  // space: the vocabulary's spelling of ' ' ("\u2581" for SentencePiece vocabs, " " for llama2.c).
  ScoreSpmTokenizer(std::vector<std::string> texts, std::vector<float> scores, std::vector<int> types,
                    std::string space, bool add_space_prefix)
      : texts_(std::move(texts)), scores_(std::move(scores)), types_(std::move(types)), space_(std::move(space)),
        add_space_prefix_(add_space_prefix) {
    for (size_t i = 0; i < texts_.size(); i++) index_[texts_[i]] = (int)i;  // last wins, as in llama.cpp
    for (int b = 0; b < 256; b++) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      auto it = index_.find(buf);
      byte_ids_[b] = it == index_.end() ? -1 : it->second;
    }
    auto u = index_.find("<unk>");
    unk_id_ = u == index_.end() ? 0 : u->second;
    cuttable_ = true;  // see tokenizer_stream.h: no token may have the space after another character
    for (auto& t : texts_) cuttable_ = cuttable_ && space_only_leading(t, space_);
  }

  std::unique_ptr<TokenStream> stream(size_t chunk_bytes) const override {
    CutStream::CutFn cut = last_space_cut;
    if (!cuttable_) cut = [](std::string_view, size_t) { return size_t(0); };
    // A part after a cut keeps its leading ' ', which spells the space symbol the whole text
    // has there; only the text's first part gets the space prefix.
    return std::make_unique<CutStream>(chunk_bytes, cut, [this](std::string_view t, PartStart st, std::vector<int>* o) {
      if (t.empty()) return;
      encode_part(t, st == PartStart::kText && add_space_prefix_, o);
    });
  }

 private:
  // llama.cpp's llm_tokenizer_spm: a linked list of UTF-8 characters and a priority queue of
  // adjacent pairs that form a token, best score first (ties: leftmost), stale entries
  // skipped: O(n log n) in the part's length.
  void encode_part(std::string_view text, bool prefix, std::vector<int>* outp) const {
    std::vector<int>& out = *outp;
    std::string s;
    s.reserve(text.size() + space_.size());
    if (prefix) s += space_;
    for (char c : text) {
      if (c == ' ') s += space_; else s += c;
    }
    struct Sym {
      int prev, next;
      size_t off, len;
    };
    std::vector<Sym> sym;
    for (size_t off = 0; off < s.size();) {
      size_t n = std::min(utf8_len((unsigned char)s[off]), s.size() - off);
      int idx = (int)sym.size();
      sym.push_back({idx - 1, -1, off, n});
      if (idx > 0) sym[idx - 1].next = idx;
      off += n;
    }
    struct Bigram {
      int left, right;
      float score;
      size_t len;
      bool operator<(const Bigram& o) const { return score < o.score || (score == o.score && left > o.left); }
    };
    std::priority_queue<Bigram> q;
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      auto it = index_.find(s.substr(sym[l].off, sym[l].len + sym[r].len));
      if (it == index_.end()) return;
      q.push({l, r, scores_[it->second], sym[l].len + sym[r].len});
    };
    for (size_t i = 1; i < sym.size(); i++) try_add((int)i - 1, (int)i);
    size_t steps = 0;
    while (!q.empty()) {
      if (++steps % 65536 == 0) check_interrupted();
      Bigram b = q.top();
      q.pop();
      Sym& L = sym[b.left];
      Sym& R = sym[b.right];
      if (L.len == 0 || R.len == 0 || L.len + R.len != b.len) continue;  // stale
      L.len += R.len;
      R.len = 0;
      L.next = R.next;
      if (R.next >= 0) sym[R.next].prev = b.left;
      try_add(L.prev, b.left);
      try_add(b.left, L.next);
    }
    for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
      std::string piece = s.substr(sym[i].off, sym[i].len);
      auto it = index_.find(piece);
      if (it != index_.end()) {
        out.push_back(it->second);
      } else {
        for (unsigned char c : piece) out.push_back(byte_ids_[c] >= 0 ? byte_ids_[c] : unk_id_);
      }
    }
  }

 public:
  std::string piece(int prev, int id) const override {
    if (id < 0 || id >= (int)texts_.size()) return "";
    const std::string& t = texts_[id];
    int ty = types_.empty() ? 1 : types_[id];
    // Byte tokens are spelled <0xHH>; a "byte" token spelled otherwise (bad vocab) is text.
    unsigned char byte;
    if (parse_byte_piece(t, &byte)) return std::string(1, (char)byte);
    if (ty == 3 || ty == 2) return "";  // control / unknown
    std::string out;
    for (size_t i = 0; i < t.size();) {
      if (t.compare(i, space_.size(), space_) == 0) {
        out += ' ';
        i += space_.size();
      } else {
        out += t[i++];
      }
    }
    if (add_space_prefix_ && prev == bos && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }

  int vocab_size() const override { return (int)texts_.size(); }
  bool export_vocab(VocabExport* v) const override {
    v->model = "llama";
    for (size_t i = 0; i < texts_.size(); i++) {
      std::string t = texts_[i], out;  // llama2.c spells spaces ' ': GGUF wants U+2581
      for (size_t k = 0; k < t.size();) {
        if (t.compare(k, space_.size(), space_) == 0) {
          out += "\xe2\x96\x81";
          k += space_.size();
        } else {
          out += t[k++];
        }
      }
      v->tokens.push_back(out);
      v->scores.push_back(scores_[i]);
      unsigned char b;
      int ty = types_.empty() ? 1 : types_[i];
      v->types.push_back(ty == 1 && parse_byte_piece(out, &b) ? 6 : ty);
    }
    v->add_space_prefix = add_space_prefix_;
    return true;
  }
  std::string kind() const override { return "spm-scores"; }

 private:
  std::vector<std::string> texts_;
  std::vector<float> scores_;
  std::vector<int> types_;
  std::string space_;
  bool add_space_prefix_;
  std::unordered_map<std::string, int> index_;
  int byte_ids_[256];
  int unk_id_ = 0;
  bool cuttable_ = false;
};

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int vocab_size) {
  MappedFile f(path);
  size_t pos = 0;
  auto need = [&](size_t n) {
    if (n > f.size() - pos) fail(path, "truncated llama2.c tokenizer (token " + std::to_string(pos) + ")");
  };
  need(4);
  int32_t max_len;
  std::memcpy(&max_len, f.data(), 4);
  pos = 4;
  if (max_len <= 0 || max_len > 4096) fail(path, "implausible max_token_length " + std::to_string(max_len));
  std::vector<std::string> texts;
  std::vector<float> scores;
  for (int i = 0; i < vocab_size; i++) {
    need(8);
    float sc;
    int32_t len;
    std::memcpy(&sc, f.data() + pos, 4);
    std::memcpy(&len, f.data() + pos + 4, 4);
    pos += 8;
    if (len < 0 || len > max_len) fail(path, "token " + std::to_string(i) + " has bad length " + std::to_string(len));
    need((size_t)len);
    texts.emplace_back(reinterpret_cast<const char*>(f.data() + pos), (size_t)len);
    scores.push_back(sc);
    pos += (size_t)len;
  }
  // llama2.c vocabularies spell spaces as ' '; BOS/EOS are 1/2 by convention.
  std::vector<int> types(vocab_size, 1);
  for (int i = 0; i < vocab_size && i < 3; i++) types[i] = i == 0 ? 2 : 3;
  auto t = std::make_unique<ScoreSpmTokenizer>(std::move(texts), std::move(scores), std::move(types), " ", true);
  t->bos = 1;
  t->eos = 2;
  t->add_bos = true;
  return t;
}

std::unique_ptr<Tokenizer> make_bpe_from_gguf(const GGUFFile& f);  // tokenizer_bpe.cc

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GGUFFile& f) {
  std::string model = f.get_string("tokenizer.ggml.model", "");
  if (model == "gpt2") return make_bpe_from_gguf(f);
  if (model != "llama") fail(f.path(), "unsupported GGUF tokenizer model '" + model + "' (supported: llama, gpt2)");
  const GGUFValue& toks = f.get("tokenizer.ggml.tokens");
  if (toks.arr_type != GGUFType::STRING) fail(f.path(), "tokenizer.ggml.tokens is not a string array");
  size_t n = toks.strs.size();
  std::vector<float> scores(n, 0.0f);
  if (f.has("tokenizer.ggml.scores")) {
    const GGUFValue& sc = f.get("tokenizer.ggml.scores");
    if (sc.floats.size() != n) fail(f.path(), "tokenizer.ggml.scores length differs from tokenizer.ggml.tokens");
    for (size_t i = 0; i < n; i++) scores[i] = (float)sc.floats[i];
  }
  std::vector<int> types(n, 1);
  if (f.has("tokenizer.ggml.token_type")) {
    const GGUFValue& ty = f.get("tokenizer.ggml.token_type");
    if (ty.ints.size() != n) fail(f.path(), "tokenizer.ggml.token_type length differs from tokenizer.ggml.tokens");
    for (size_t i = 0; i < n; i++) types[i] = (int)ty.ints[i];
  }
  bool prefix = f.get_int("tokenizer.ggml.add_space_prefix", 1) != 0;
  auto t = std::make_unique<ScoreSpmTokenizer>(toks.strs, std::move(scores), std::move(types), "\xe2\x96\x81", prefix);
  t->bos = (int)f.get_int("tokenizer.ggml.bos_token_id", 1);
  t->eos = (int)f.get_int("tokenizer.ggml.eos_token_id", 2);
  t->add_bos = f.get_int("tokenizer.ggml.add_bos_token", 1) != 0;
  return t;
}

}  // namespace kt
