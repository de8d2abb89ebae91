// Byte-level BPE (GPT-2 family) and SentencePiece-style BPE from tokenizer.json / GGUF "gpt2":
// added-token split (one automaton, tokenizer_added.h) -> pre-tokenizer regexes (PCRE2,
// streamed, tokenizer_regex.h) -> bytes mapped to printable code points -> merges by rank
// (priority queue, O(n log n) per word) -> ids. Everything runs as a stream, so the memory a
// text needs is bounded by its longest piece, not by its length.
#include <climits>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "io/gguf.h"
#include "io/json_checked.h"
#include "io/tokenizer.h"
#include "io/tokenizer_added.h"
#include "io/tokenizer_regex.h"
#include "io/tokenizer_stream.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"

namespace kt {

namespace {

using json = nlohmann::json;

const char* const kMetaspace = "\xe2\x96\x81";  // U+2581, SentencePiece's space

const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

std::string cp_to_utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += (char)cp;
  } else if (cp < 0x800) {
    s += (char)(0xc0 | (cp >> 6));
    s += (char)(0x80 | (cp & 0x3f));
  } else {
    s += (char)(0xe0 | (cp >> 12));
    s += (char)(0x80 | ((cp >> 6) & 0x3f));
    s += (char)(0x80 | (cp & 0x3f));
  }
  return s;
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256+n.
struct ByteMap {
  std::string enc[256];
  std::unordered_map<std::string, uint8_t> dec;
  ByteMap() {
    int n = 0;
    for (int b = 0; b < 256; b++) {
      bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      enc[b] = cp_to_utf8(keep ? b : 256 + n++);
      dec[enc[b]] = (uint8_t)b;
    }
  }
};
const ByteMap& byte_map() {
  static ByteMap m;
  return m;
}

bool is_cont(unsigned char c) { return (c & 0xc0) == 0x80; }

// Strict UTF-8 (what PCRE2 accepts: no overlong forms, surrogates or code points past
// U+10FFFF), checked incrementally so a block may end inside a character.
class Utf8Check {
 public:
  void feed(std::string_view s) {
    for (unsigned char c : s) {
      if (need_) {
        if (c < lo_ || c > hi_) bad();
        lo_ = 0x80, hi_ = 0xbf;
        need_--;
      } else if (c < 0x80) {
      } else if (c >= 0xc2 && c <= 0xdf) {
        need_ = 1;
      } else if (c >= 0xe0 && c <= 0xef) {
        need_ = 2;
        if (c == 0xe0) lo_ = 0xa0;
        if (c == 0xed) hi_ = 0x9f;
      } else if (c >= 0xf0 && c <= 0xf4) {
        need_ = 3;
        if (c == 0xf0) lo_ = 0x90;
        if (c == 0xf4) hi_ = 0x8f;
      } else {
        bad();
      }
      offset_++;
    }
  }
  void finish() const {
    if (need_) bad();
  }

 private:
  [[noreturn]] void bad() const {
    fail("tokenizer: input text is not valid UTF-8 (byte " + std::to_string(offset_) + ")");
  }
  int need_ = 0;
  unsigned char lo_ = 0x80, hi_ = 0xbf;
  size_t offset_ = 0;
};

bool valid_utf8(std::string_view s) {
  try {
    Utf8Check c;
    c.feed(s);
    c.finish();
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Pre-order walk of a json tree (pre-tokenizer / normalizer / post-processor Sequences) with
// an explicit stack: nesting cannot overflow the C++ stack. kids(node) gives the children to
// walk in order, or nullptr.
void walk(const json& root, const std::function<const json*(const json&)>& kids,
          const std::function<void(const json&)>& visit) {
  std::vector<const json*> stack{&root};
  while (!stack.empty()) {
    const json* n = stack.back();
    stack.pop_back();
    visit(*n);
    if (const json* k = kids(*n)) {
      std::vector<const json*> c;
      for (auto& x : *k) c.push_back(&x);
      for (auto it = c.rbegin(); it != c.rend(); ++it) stack.push_back(*it);
    }
  }
}

// Children of a node of type "Sequence" under `key` (required there), as the old recursive
// walks did.
std::function<const json*(const json&)> sequence_kids(const char* key) {
  return [key](const json& n) -> const json* {
    if (!n.is_object() || n.value("type", "") != "Sequence") return nullptr;
    return &n.at(key);
  };
}
// Children under `key` of any object node that has it.
std::function<const json*(const json&)> any_kids(const char* key) {
  return [key](const json& n) -> const json* {
    if (!n.is_object()) return nullptr;
    auto it = n.find(key);
    return it == n.end() ? nullptr : &*it;
  };
}

class ByteBpeTokenizer : public Tokenizer {
 public:
  std::string path;  // the file it came from
  std::unordered_map<std::string, int> vocab;
  std::vector<std::string> id_to_token;
  std::unordered_map<uint64_t, std::pair<int, int>> pair_merge;  // (left id, right id) -> (rank, merged id)
  std::vector<std::string> merges;                               // "left right" by rank (first of duplicates)
  std::vector<std::unique_ptr<RegexSplit>> splits;               // applied in order
  bool prefix_space = false;
  bool gpt2_split = false;  // the GPT-2 regex is among the splits (GGUF "gpt-2" pre-tokenizer)
  // SentencePiece-style BPE (Llama-2/TinyLlama tokenizer.json): spaces become U+2581, a U+2581
  // is prepended, symbols are UTF-8 characters (no byte map), unknown symbols fall back to
  // <0xHH> byte tokens (or unk).
  bool metaspace = false;
  std::string ms_prepend;           // "" or "\xe2\x96\x81"
  bool ms_prepend_first_only = false;
  bool ms_split = false;            // Metaspace pre-tokenizer split=true: words start at U+2581
  bool byte_fallback = false;
  int unk_id = -1;
  struct Added {
    std::string content;
    int id;
    bool special;
  };
  std::vector<Added> added;  // matched leftmost-longest before pre-tokenization

  // After the fields above are set: checks what would silently drop text and builds the
  // lookup structures. `path` names the file in messages.
  void finalize();

  std::unique_ptr<TokenStream> stream(size_t chunk_bytes) const override;

  std::string piece(int prev, int id) const override {
    if (id < 0 || id >= (int)id_to_token.size()) return "";
    if (added_kind_[id] >= 0) return added_kind_[id] ? "" : id_to_token[id];
    const std::string& t = id_to_token[id];
    std::string out;
    if (metaspace) {
      unsigned char byte;
      if (parse_byte_piece(t, &byte)) return std::string(1, (char)byte);
      for (size_t i = 0; i < t.size();) {
        if (t.compare(i, 3, kMetaspace) == 0) {
          out += ' ';
          i += 3;
        } else {
          out += t[i++];
        }
      }
      if (!ms_prepend.empty() && prev == bos && !out.empty() && out[0] == ' ') out.erase(0, 1);
      return out;
    }
    const ByteMap& bm = byte_map();
    for (size_t i = 0; i < t.size();) {
      size_t n = ((unsigned char)t[i] < 0x80) ? 1 : ((unsigned char)t[i] >> 5) == 6 ? 2 : 3;
      auto it = bm.dec.find(t.substr(i, n));
      if (it != bm.dec.end()) out += (char)it->second; else out += t.substr(i, n);
      i += n;
    }
    return out;
  }
  int vocab_size() const override { return (int)id_to_token.size(); }
  bool export_vocab(VocabExport* v) const override {
    if (metaspace || splits.size() != 1 || !gpt2_split || prefix_space) return false;  // GGUF "gpt-2" only
    v->model = "gpt2";
    v->tokens = id_to_token;
    v->scores.assign(id_to_token.size(), 0.0f);
    v->types.assign(id_to_token.size(), 1);
    for (auto& a : added) v->types[a.id] = a.special ? 3 : 4;
    v->merges = merges;
    v->add_space_prefix = false;
    return true;
  }
  std::string kind() const override { return metaspace ? "spm-bpe" : "byte-bpe"; }

  void bpe_word(std::string_view w, std::vector<int>* out) const;

  std::unique_ptr<AddedMatcher> matcher;
  std::vector<int> match_id;  // matcher index -> token id
  std::vector<size_t> match_len;
  bool ms_cuttable = false;   // no token has U+2581 after another character

 private:
  std::vector<signed char> added_kind_;  // per id: -1 not added, 0 added, 1 special
  int byte_id_[256] = {};
  mutable std::unordered_map<std::string, std::vector<int>> cache_;  // short words only
};

void ByteBpeTokenizer::finalize() {
  added_kind_.assign(id_to_token.size(), -1);
  std::vector<std::string> contents;
  for (auto& a : added) {
    added_kind_[a.id] = a.special ? 1 : 0;
    // Text is valid UTF-8, so a content that is not can only match inside a character and
    // leave invalid pieces behind: it is never matched.
    contents.push_back(valid_utf8(a.content) ? a.content : std::string());
    match_id.push_back(a.id);
    match_len.push_back(a.content.size());
  }
  matcher = std::make_unique<AddedMatcher>(contents);
  if (metaspace) {
    if (byte_fallback)
      for (int b = 0; b < 256; b++) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "<0x%02X>", b);
        if (!vocab.count(hex))
          fail(path, std::string("byte_fallback is set but the vocab has no '") + hex +
                         "' token (text with that byte would be dropped)");
      }
    ms_cuttable = true;
    for (auto& t : id_to_token) ms_cuttable = ms_cuttable && space_only_leading(t, kMetaspace);
  } else {
    // Real byte-level vocabularies may lack a few control bytes (SmolLM2 has no 0x04): such a
    // byte is dropped, as HF tokenizers drops it.
    const ByteMap& bm = byte_map();
    for (int b = 0; b < 256; b++) {
      auto it = vocab.find(bm.enc[b]);
      byte_id_[b] = it == vocab.end() ? -1 : it->second;
    }
  }
}

// HF tokenizers' BPE (word.rs merge_all): symbols in a linked list, a min-heap of adjacent
// pairs keyed by (merge rank, position), entries made stale by an earlier merge skipped when
// popped. O(n log n) in the word's length.
void ByteBpeTokenizer::bpe_word(std::string_view w, std::vector<int>* out) const {
  if (w.empty()) return;
  const bool cacheable = w.size() <= 64;
  if (cacheable) {
    auto c = cache_.find(std::string(w));
    if (c != cache_.end()) {
      out->insert(out->end(), c->second.begin(), c->second.end());
      return;
    }
  }
  struct Sym {
    int id, prev, next;
    uint32_t off, len;
  };
  std::vector<Sym> sym;
  if (metaspace) {  // UTF-8 characters
    for (size_t i = 0; i < w.size();) {
      unsigned char c = (unsigned char)w[i];
      size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
      n = std::min(n, w.size() - i);
      auto it = vocab.find(std::string(w.substr(i, n)));
      int k = (int)sym.size();
      sym.push_back({it == vocab.end() ? -1 : it->second, k - 1, -1, (uint32_t)i, (uint32_t)n});
      i += n;
    }
  } else {
    for (size_t i = 0; i < w.size(); i++) {
      int k = (int)sym.size();
      sym.push_back({byte_id_[(unsigned char)w[i]], k - 1, -1, (uint32_t)i, 1});
    }
  }
  for (size_t k = 0; k + 1 < sym.size(); k++) sym[k].next = (int)k + 1;
  struct Cand {
    int rank, pos;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  auto find = [&](int l, int r) -> const std::pair<int, int>* {
    if (l < 0 || r < 0 || sym[l].id < 0 || sym[r].id < 0) return nullptr;
    auto it = pair_merge.find((uint64_t)(uint32_t)sym[l].id << 32 | (uint32_t)sym[r].id);
    return it == pair_merge.end() ? nullptr : &it->second;
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  for (size_t k = 0; k + 1 < sym.size(); k++)
    if (auto m = find((int)k, (int)k + 1)) heap.push({m->first, (int)k});
  size_t steps = 0;
  while (!heap.empty()) {
    if (++steps % 65536 == 0) check_interrupted();
    Cand c = heap.top();
    heap.pop();
    Sym& L = sym[c.pos];
    if (L.len == 0 || L.next < 0) continue;
    auto m = find(c.pos, L.next);
    if (!m || m->first != c.rank) continue;  // stale: a neighbour changed since it was pushed
    Sym& R = sym[L.next];
    L.id = m->second;
    L.len += R.len;
    R.len = 0;
    L.next = R.next;
    if (L.next >= 0) sym[L.next].prev = c.pos;
    if (auto p = find(L.prev, c.pos)) heap.push({p->first, L.prev});
    if (auto n = find(c.pos, L.next)) heap.push({n->first, c.pos});
  }
  std::vector<int> ids;
  for (int k = 0; k >= 0; k = sym[k].next) {
    const Sym& s = sym[k];
    if (s.id >= 0) {
      ids.push_back(s.id);
    } else if (metaspace && byte_fallback) {
      for (size_t i = s.off; i < s.off + s.len; i++) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "<0x%02X>", (unsigned char)w[i]);
        ids.push_back(vocab.at(hex));  // present: checked by finalize()
      }
    } else if (metaspace && unk_id >= 0) {
      ids.push_back(unk_id);
    }  // else dropped, as HF does without an unk token
  }
  if (cacheable && cache_.size() < 200000) cache_.emplace(std::string(w), ids);
  out->insert(out->end(), ids.begin(), ids.end());
}

// ---- the stream: added tokens -> segment normalisation -> splits -> BPE words ----

// Collects a piece and BPE-encodes it when it ends.
class WordSink : public PieceSink {
 public:
  WordSink(const ByteBpeTokenizer& t, std::vector<int>** out) : t_(t), out_(out) {}
  void append(std::string_view b) override {
    word_.append(b);
    while (word_.size() > kMaxUncutBytes) {  // bounded memory: a forced cut (tokenizer_stream.h)
      size_t p = utf8_boundary(word_, kMaxUncutBytes);
      if (p == 0) p = kMaxUncutBytes;
      t_.bpe_word(std::string_view(word_).substr(0, p), *out_);
      word_.erase(0, p);
    }
  }
  void end() override {
    t_.bpe_word(word_, *out_);
    word_.clear();
  }

 private:
  const ByteBpeTokenizer& t_;
  std::vector<int>** out_;
  std::string word_;
};

// SentencePiece-style splits before U+2581. every=true: the Metaspace pre-tokenizer's split
// (before every U+2581 at byte offset >= 3 of the segment, as kurtail always did);
// every=false: the cut of tokenizer_stream.h (before a U+2581 that follows another character),
// exact when no token has U+2581 after another character.
class MetaspaceSplit : public PieceSink {
 public:
  MetaspaceSplit(PieceSink* next, bool every) : next_(next), every_(every) {}
  void append(std::string_view b) override {
    cur_.append(b);
    size_t j = scanned_;
    for (; j + 3 <= cur_.size(); j++) {
      if (j == st_ || cur_.compare(j, 3, kMetaspace) != 0) continue;
      bool cut = every_ ? seg_base_ + j >= 3 : !(j >= st_ + 3 && cur_.compare(j - 3, 3, kMetaspace) == 0);
      if (!cut) continue;
      next_->append(std::string_view(cur_).substr(st_, j - st_));
      next_->end();
      st_ = j;
    }
    scanned_ = j;
    if (st_ > 0) {  // drop what went on, once per block
      cur_.erase(0, st_);
      seg_base_ += st_;
      scanned_ -= st_;
      st_ = 0;
    }
  }
  void end() override {
    if (cur_.size() > st_) {
      next_->append(std::string_view(cur_).substr(st_));
      next_->end();
    }
    cur_.clear();
    scanned_ = st_ = seg_base_ = 0;
  }

 private:
  PieceSink* next_;
  bool every_;
  std::string cur_;
  size_t scanned_ = 0, st_ = 0, seg_base_ = 0;  // cur_[0] is byte seg_base_ of the segment
};

class BpeStream : public TokenStream {
 public:
  BpeStream(const ByteBpeTokenizer& t, size_t chunk) : t_(t), chunk_(std::max<size_t>(chunk, 1)) {
    PieceSink* head = sinks_.emplace_back(std::make_unique<WordSink>(t, &out_)).get();
    if (t.metaspace) {
      if (t.ms_split || t.ms_cuttable) head = sinks_.emplace_back(std::make_unique<MetaspaceSplit>(head, t.ms_split)).get();
    } else {
      for (auto it = t.splits.rbegin(); it != t.splits.rend(); ++it)
        head = sinks_.emplace_back(std::make_unique<RegexStage>(**it, head, chunk_)).get();
    }
    head_ = head;
  }
  void feed(std::string_view bytes, std::vector<int>* out) override {
    out_ = out;
    utf8_.feed(bytes);
    raw_.append(bytes);
    const size_t need = std::max(chunk_, 2 * t_.matcher->max_len());
    if (raw_.size() - pos_ >= need) process(false);
  }
  void finish(std::vector<int>* out) override {
    out_ = out;
    utf8_.finish();
    process(true);
    end_segment();
  }

 private:
  // Added-token split of raw_ as far as it is final: a match at i needs the bytes up to
  // i + max_len to be known.
  void process(bool eof) {
    check_interrupted();
    const size_t maxlen = t_.matcher->max_len();
    if (maxlen > 0) {
      const size_t limit = eof ? raw_.size() : raw_.size() - maxlen + 1;  // raw_.size() >= 2*maxlen here
      const size_t base = pos_;
      t_.matcher->longest_at(std::string_view(raw_).substr(base), &best_);
      while (pos_ < limit) {
        int k = best_[pos_ - base];
        if (k == 0) {
          pos_++;
          continue;
        }
        plain(last_, pos_);
        end_segment();
        out_->push_back(t_.match_id[k - 1]);
        pos_ += t_.match_len[k - 1];
        last_ = pos_;
      }
    } else {
      pos_ = raw_.size();
    }
    // Plain bytes up to a character boundary go on; the rest waits.
    size_t cb = eof ? raw_.size() : std::min(pos_, raw_.size());
    if (!eof) cb = char_boundary(cb);
    if (cb > last_) plain(last_, cb), last_ = cb;
    raw_.erase(0, last_);
    text_off_ += last_;
    pos_ -= last_;
    last_ = 0;
  }
  // The largest character boundary <= p (and >= last_, which is one). raw_ is valid UTF-8
  // except perhaps an incomplete last character.
  size_t char_boundary(size_t p) const {
    if (p <= last_) return p;
    if (p < raw_.size()) {
      while (p > last_ && is_cont((unsigned char)raw_[p])) p--;
      return p;
    }
    size_t lead = p - 1;
    while (lead > last_ && is_cont((unsigned char)raw_[lead])) lead--;
    unsigned char c = (unsigned char)raw_[lead];
    size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    return lead + n <= p ? p : lead;
  }
  void plain(size_t b, size_t e) {
    if (e <= b) return;
    std::string_view s = std::string_view(raw_).substr(b, e - b);
    if (!in_segment_) {
      in_segment_ = true;
      const bool first = text_off_ + b == 0;
      if (t_.metaspace) {
        if (!(t_.ms_prepend_first_only && !first)) head_->append(t_.ms_prepend);
      } else if (t_.prefix_space && s[0] != ' ') {
        head_->append(" ");
      }
    }
    if (!t_.metaspace) return head_->append(s);
    std::string n;
    n.reserve(s.size() + 16);
    for (char c : s) {
      if (c == ' ') n += kMetaspace; else n += c;
    }
    head_->append(n);
  }
  void end_segment() {
    if (!in_segment_) return;
    head_->end();
    in_segment_ = false;
  }

  const ByteBpeTokenizer& t_;
  size_t chunk_;
  std::vector<int>* out_ = nullptr;
  std::vector<std::unique_ptr<PieceSink>> sinks_;
  PieceSink* head_ = nullptr;
  Utf8Check utf8_;
  std::string raw_;
  size_t pos_ = 0, last_ = 0, text_off_ = 0;
  bool in_segment_ = false;
  std::vector<int32_t> best_;
};

std::unique_ptr<TokenStream> ByteBpeTokenizer::stream(size_t chunk_bytes) const {
  return std::make_unique<BpeStream>(*this, chunk_bytes);
}

void add_pretokenizer(const json& pt, ByteBpeTokenizer* t, const std::string& path) {
  std::string type = pt.value("type", "");
  if (type == "Sequence") {
    // children are walked by walk()
  } else if (type == "ByteLevel") {
    if (pt.value("add_prefix_space", false)) t->prefix_space = true;
    if (pt.value("use_regex", true)) {
      t->splits.push_back(std::make_unique<RegexSplit>(kGpt2Pattern));
      t->gpt2_split = true;
    }
  } else if (type == "Digits") {
    t->splits.push_back(std::make_unique<RegexSplit>(pt.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+"));
  } else if (type == "Split") {
    const json& pat = pt.at("pattern");
    std::string behavior = pt.value("behavior", "Isolated");
    if (behavior != "Isolated" || pt.value("invert", false))
      fail(path, "unsupported Split pre-tokenizer behaviour " + quote(behavior));
    try {
      if (pat.contains("Regex")) {
        t->splits.push_back(std::make_unique<RegexSplit>(pat["Regex"].get<std::string>()));
      } else if (pat.contains("String")) {
        std::string lit = pat["String"].get<std::string>(), q;
        for (char c : lit) {
          if (std::strchr("\\^$.|?*+()[]{}", c)) q += '\\';
          q += c;
        }
        t->splits.push_back(std::make_unique<RegexSplit>(q));
      }
    } catch (const json::exception&) {
      throw;
    } catch (const Error& e) {
      fail(path, e.what());
    }
  } else {
    fail(path, "unsupported pre-tokenizer type " + quote(type));
  }
}

// SentencePiece-style tokenizer.json: the normalizer (Llama-2: Prepend U+2581 + Replace " ")
// and/or a Metaspace pre-tokenizer say how spaces are spelled. Anything else is refused by name.
void configure_metaspace(const json& nz, const json& pt, ByteBpeTokenizer* t, const std::string& path) {
  bool replaces_space = false;
  walk(nz, sequence_kids("normalizers"), [&](const json& n) {
    if (n.is_null()) return;
    std::string type = n.value("type", "");
    if (type == "Sequence") {
    } else if (type == "Prepend") {
      t->ms_prepend = n.value("prepend", "");
    } else if (type == "Replace") {
      const json& pat = n.at("pattern");
      if (!pat.contains("String") || pat["String"] != " " || n.value("content", "") != kMetaspace)
        fail(path, "unsupported Replace normalizer (only \" \" -> U+2581)");
      replaces_space = true;
    } else if (type != "NFC") {
      fail(path, "unsupported normalizer " + quote(type));
    }
  });
  bool ms_pre = false;
  walk(pt, sequence_kids("pretokenizers"), [&](const json& p) {
    if (p.is_null()) return;
    std::string type = p.value("type", "");
    if (type == "Sequence") {
    } else if (type == "Metaspace") {
      if (p.value("replacement", kMetaspace) != kMetaspace) fail(path, "unsupported Metaspace replacement");
      ms_pre = true;
      std::string scheme = p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
      t->ms_prepend = scheme == "never" ? "" : kMetaspace;
      t->ms_prepend_first_only = scheme == "first";
      t->ms_split = p.value("split", true);
    } else {
      fail(path, "unsupported pre-tokenizer type " + quote(type) + " in a SentencePiece-style tokenizer.json");
    }
  });
  if (!replaces_space && !ms_pre)
    fail(path, "tokenizer.json is neither byte-level nor SentencePiece-style (no ByteLevel, Metaspace or space Replace)");
  t->metaspace = true;
}

// Merge `rank` ("left right") must name two vocab tokens whose concatenation is one too (HF
// refuses the file otherwise); a merge that names anything else would silently drop text.
void add_merge(ByteBpeTokenizer* t, const std::string& left, const std::string& right, size_t rank,
               const std::string& path, const std::string& what) {
  auto id_of = [&](const std::string& s, const char* role) {
    auto it = t->vocab.find(s);
    if (it == t->vocab.end())
      fail(path, what + " " + std::to_string(rank) + " " + quote(left + " " + right) + " " + role + " " + quote(s) +
                     ", which is not in the vocab");
    return it->second;
  };
  int a = id_of(left, "names"), b = id_of(right, "names"), ab = id_of(left + right, "makes");
  if (rank > (size_t)INT_MAX) fail(path, "too many merges");
  if (t->pair_merge.emplace((uint64_t)(uint32_t)a << 32 | (uint32_t)b, std::make_pair((int)rank, ab)).second)
    t->merges.push_back(left + " " + right);  // the first of duplicate merges wins
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  json j;
  j = parse_json(read_file(path, kMaxTokenizerBytes), path);
  auto t = std::make_unique<ByteBpeTokenizer>();
  t->path = path;
  try {
    if (!j.is_object()) fail(path, "tokenizer.json is a JSON " + std::string(json_type_name(j)) + ", expected an object");
    const json& m = j.at("model");
    if (m.value("type", "") != "BPE") fail(path, "unsupported tokenizer model type " + quote(m.value("type", "")));
    for (const char* opt : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (m.contains(opt) && !m[opt].is_null() && !(m[opt].is_string() && m[opt].get<std::string>().empty()))
        fail(path, std::string("unsupported BPE option ") + opt + " (it would change every word)");
    const json& pt = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json();
    bool byte_level = false;
    walk(pt, any_kids("pretokenizers"), [&](const json& p) {
      if (p.is_object() && p.value("type", "") == "ByteLevel") byte_level = true;
    });
    const json& nz = j.contains("normalizer") ? j["normalizer"] : json();
    if (byte_level) {
      if (!nz.is_null()) {
        std::string nt = nz.value("type", "");
        // NFC is accepted as identity: text that is already NFC (nearly all) tokenizes identically.
        if (nt != "NFC") fail(path, "unsupported normalizer " + quote(nt));
      }
    } else {
      configure_metaspace(nz, pt, t.get(), path);
      t->byte_fallback = m.value("byte_fallback", false);
    }
    // Every id must fit the file: ids index a table of at most (vocab entries + added tokens)
    // slots, so a small file cannot make a huge table.
    const json& vj = m.at("vocab");
    if (!vj.is_object()) fail(path, "model.vocab is a JSON " + std::string(json_type_name(vj)) + ", expected an object");
    const json added_j = j.value("added_tokens", json::array());
    if (!added_j.is_array()) fail(path, "added_tokens is a JSON " + std::string(json_type_name(added_j)) + ", expected an array");
    const size_t limit = vj.size() + added_j.size();
    auto check_id = [&](const json& v, const std::string& tok, const char* what) {
      const int64_t id = json_number<int64_t>(v, path, what);
      if (id < 0 || (size_t)id >= limit)
        fail(path, std::string(what) + " " + std::to_string(id) + " of " + quote(tok) + " is out of range (the file has " +
                       std::to_string(vj.size()) + " vocab entries and " + std::to_string(added_j.size()) +
                       " added tokens)");
      return (int)id;
    };
    int max_id = -1;
    for (auto& [tok, id] : vj.items()) {
      const int v = check_id(id, tok, "vocab id");
      t->vocab.emplace(tok, v);  // keys are unique: parse_json refuses duplicate keys
      max_id = std::max(max_id, v);
    }
    for (auto& a : added_j) {
      const std::string content = a.at("content").get<std::string>();
      const int v = check_id(a.at("id"), content, "added token id");
      t->added.push_back({content, v, a.value("special", false)});
      max_id = std::max(max_id, v);
    }
    if (max_id < 0) fail(path, "empty vocabulary");
    t->id_to_token.assign(max_id + 1, "");
    std::vector<char> taken(max_id + 1, 0);
    for (auto& [tok, id] : t->vocab) {
      if (taken[id]) {
        const std::string& other = t->id_to_token[id];
        fail(path, "vocab gives id " + std::to_string(id) + " to both " + quote(std::min(tok, other)) + " and " +
                       quote(std::max(tok, other)));
      }
      taken[id] = 1;
      t->id_to_token[id] = tok;
    }
    std::vector<char> added_taken(max_id + 1, 0);
    for (auto& a : t->added) {
      if (added_taken[a.id]) fail(path, "added_tokens give id " + std::to_string(a.id) + " twice");
      if (taken[a.id] && t->id_to_token[a.id] != a.content)
        fail(path, "added token " + quote(a.content) + " has id " + std::to_string(a.id) + ", which the vocab gives to " +
                       quote(t->id_to_token[a.id]));
      added_taken[a.id] = 1;
      t->id_to_token[a.id] = a.content;
    }
    const json& mj = m.at("merges");
    if (!mj.is_array()) fail(path, "model.merges is a JSON " + std::string(json_type_name(mj)) + ", expected an array");
    size_t rank = 0;
    for (auto& mg : mj) {
      std::string l, r;
      if (mg.is_string()) {
        const std::string s = mg.get<std::string>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos)
          fail(path, "merge " + std::to_string(rank) + " " + quote(s) + " is not two tokens separated by one space");
        l = s.substr(0, sp), r = s.substr(sp + 1);
      } else {
        if (!mg.is_array() || mg.size() != 2) fail(path, "merge " + std::to_string(rank) + " is not a pair of tokens");
        l = mg.at(0).get<std::string>(), r = mg.at(1).get<std::string>();
      }
      add_merge(t.get(), l, r, rank++, path, "merge");
    }
    if (!pt.is_null() && !t->metaspace)
      walk(pt, sequence_kids("pretokenizers"), [&](const json& p) { add_pretokenizer(p, t.get(), path); });
    if (t->metaspace && m.contains("unk_token") && m["unk_token"].is_string()) {
      auto u = t->vocab.find(m["unk_token"].get<std::string>());
      if (u != t->vocab.end()) t->unk_id = u->second;
    }
    // BOS: a TemplateProcessing post-processor that starts with a special token adds it.
    if (j.contains("post_processor") && j["post_processor"].is_object()) {
      walk(j["post_processor"], any_kids("processors"), [&](const json& p) {
        if (p.value("type", "") == "TemplateProcessing" && p.contains("single") && !p["single"].empty() &&
            p["single"][0].contains("SpecialToken")) {
          std::string tok = p["single"][0]["SpecialToken"].at("id").get<std::string>();
          for (auto& a : t->added)
            if (a.content == tok) {
              t->bos = a.id;
              t->add_bos = true;
            }
        }
      });
    }
    t->finalize();
  } catch (const json::exception& e) {
    fail(path, std::string("malformed tokenizer.json: ") + e.what());
  }
  return t;
}

std::unique_ptr<Tokenizer> make_bpe_from_gguf(const GGUFFile& f) {
  auto t = std::make_unique<ByteBpeTokenizer>();
  t->path = f.path();
  const GGUFValue& toks = f.get("tokenizer.ggml.tokens");
  const GGUFValue& merges = f.get("tokenizer.ggml.merges");
  if (toks.arr_type != GGUFType::STRING || merges.arr_type != GGUFType::STRING)
    fail(f.path(), "tokenizer.ggml.tokens/merges must be string arrays");
  if (toks.strs.size() > (size_t)INT_MAX) fail(f.path(), "tokenizer.ggml.tokens has too many entries");
  t->id_to_token = toks.strs;
  for (size_t i = 0; i < toks.strs.size(); i++) t->vocab[toks.strs[i]] = (int)i;
  for (size_t i = 0; i < merges.strs.size(); i++) {
    const std::string& s = merges.strs[i];
    size_t sp = s.find(' ', 1);  // a token may be " " itself only in odd vocabularies: split after the first byte
    if (sp == std::string::npos || sp + 1 >= s.size())
      fail(f.path(), "tokenizer.ggml.merges " + std::to_string(i) + " " + quote(s) + " is not two tokens separated by a space");
    add_merge(t.get(), s.substr(0, sp), s.substr(sp + 1), i, f.path(), "tokenizer.ggml.merges");
  }
  std::string pre = f.get_string("tokenizer.ggml.pre", "gpt-2");
  if (pre == "gpt-2" || pre == "gpt2" || pre == "default") {
    t->splits.push_back(std::make_unique<RegexSplit>(kGpt2Pattern));
    t->gpt2_split = true;
  } else {
    fail(f.path(), "unsupported GGUF pre-tokenizer " + quote(pre));
  }
  if (f.has("tokenizer.ggml.token_type")) {
    const GGUFValue& ty = f.get("tokenizer.ggml.token_type");
    for (size_t i = 0; i < ty.ints.size() && i < toks.strs.size(); i++)
      if (ty.ints[i] == 3 || ty.ints[i] == 4) t->added.push_back({toks.strs[i], (int)i, ty.ints[i] == 3});
  }
  t->bos = (int)f.get_int("tokenizer.ggml.bos_token_id", -1);
  t->eos = (int)f.get_int("tokenizer.ggml.eos_token_id", -1);
  t->add_bos = f.get_int("tokenizer.ggml.add_bos_token", 0) != 0;
  t->finalize();
  return t;
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir) {
  std::string spm = join_path(dir, "tokenizer.model"), tj = join_path(dir, "tokenizer.json");
  std::unique_ptr<Tokenizer> t;
  if (file_exists(spm)) t = load_sentencepiece(spm);
  else if (file_exists(tj)) t = load_tokenizer_json(tj);
  else fail(dir, "missing tokenizer (no tokenizer.model or tokenizer.json)");
  std::string cfg = join_path(dir, "tokenizer_config.json");
  if (file_exists(cfg)) {
    try {
      json c = parse_json(read_file(cfg), cfg);
      if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) t->add_bos = c["add_bos_token"].get<bool>();
    } catch (const json::exception& e) {
      fail(cfg, std::string("not valid JSON: ") + e.what());
    }
  }
  return t;
}

}  // namespace kt
