// Byte-level BPE (GPT-2 family): added-token split -> pre-tokenizer regexes (PCRE2, UTF-8,
// Unicode properties) -> bytes mapped to printable code points -> merges by rank -> ids.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <climits>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "io/gguf.h"
#include "io/json_checked.h"
#include "io/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

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

// A compiled regex split with HF "Isolated" behaviour: matches and the gaps between them
// both become pieces.
class RegexSplit {
 public:
  explicit RegexSplit(const std::string& pattern) {
    int err;
    PCRE2_SIZE eoff;
    code_ = pcre2_compile((PCRE2_SPTR)pattern.c_str(), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &eoff, nullptr);
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      fail("pre-tokenizer regex does not compile: " + std::string((char*)buf));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // best effort
  }
  ~RegexSplit() { pcre2_code_free(code_); }
  RegexSplit(const RegexSplit&) = delete;
  RegexSplit& operator=(const RegexSplit&) = delete;

  void split(const std::string& s, std::vector<std::string>* out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0, last = 0;
    while (pos <= s.size()) {
      int rc = pcre2_match(code_, (PCRE2_SPTR)s.data(), s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc < 0) break;
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step one character
        pos = b + 1;
        while (pos < s.size() && ((unsigned char)s[pos] & 0xc0) == 0x80) pos++;
        continue;
      }
      if (b > last) out->push_back(s.substr(last, b - last));
      out->push_back(s.substr(b, e - b));
      last = pos = e;
    }
    if (last < s.size()) out->push_back(s.substr(last));
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_ = nullptr;
};

bool valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; k++)
      if (((unsigned char)s[i + k] & 0xc0) != 0x80) return false;
    i += n;
  }
  return true;
}

class ByteBpeTokenizer : public Tokenizer {
 public:
  std::unordered_map<std::string, int> vocab;
  std::vector<std::string> id_to_token;
  std::unordered_map<std::string, int> merge_rank;  // "left right" -> rank
  std::vector<std::unique_ptr<RegexSplit>> splits;  // applied in order
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
  std::vector<Added> added;  // matched longest-first before pre-tokenization

  std::vector<int> encode(std::string_view text) const override {
    if (!valid_utf8(text)) fail("tokenizer: input text is not valid UTF-8");
    std::vector<int> out;
    // 1. split on added tokens
    size_t pos = 0, last = 0;
    while (pos < text.size()) {
      const Added* hit = nullptr;
      for (auto& a : added)
        if (!a.content.empty() && text.compare(pos, a.content.size(), a.content) == 0 &&
            (!hit || a.content.size() > hit->content.size()))
          hit = &a;
      if (hit) {
        if (pos > last) encode_plain(std::string(text.substr(last, pos - last)), &out, last == 0);
        out.push_back(hit->id);
        pos += hit->content.size();
        last = pos;
      } else {
        pos++;
      }
    }
    if (last < text.size()) encode_plain(std::string(text.substr(last)), &out, last == 0);
    return out;
  }

  std::string piece(int prev, int id) const override {
    if (id < 0 || id >= (int)id_to_token.size()) return "";
    for (auto& a : added)
      if (a.id == id) return a.special ? "" : a.content;
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
    std::vector<const std::string*> by_rank(merge_rank.size());
    for (auto& [m, r] : merge_rank)
      if (r >= 0 && (size_t)r < by_rank.size()) by_rank[r] = &m;
    for (auto* m : by_rank)
      if (m) v->merges.push_back(*m);
    v->add_space_prefix = false;
    return true;
  }
  std::string kind() const override { return metaspace ? "spm-bpe" : "byte-bpe"; }

 private:
  mutable std::unordered_map<std::string, std::vector<int>> cache_;

  void encode_plain(std::string s, std::vector<int>* out, bool first) const {
    if (metaspace) {
      std::string n = (ms_prepend_first_only && !first) ? "" : ms_prepend;
      for (char c : s) {
        if (c == ' ') n += kMetaspace; else n += c;
      }
      if (!ms_split) return bpe_word(n, out);
      size_t start = 0;  // split before every U+2581 (each word keeps its leading one)
      for (size_t i = 3; i + 3 <= n.size(); i++)
        if (n.compare(i, 3, kMetaspace) == 0) {
          bpe_word(n.substr(start, i - start), out);
          start = i;
        }
      return bpe_word(n.substr(start), out);
    }
    if (prefix_space && (s.empty() || s[0] != ' ')) s = " " + s;
    std::vector<std::string> pieces{s}, next;
    for (auto& sp : splits) {
      next.clear();
      for (auto& p : pieces) sp->split(p, &next);
      pieces.swap(next);
    }
    for (auto& p : pieces) bpe_word(p, out);
  }

  void bpe_word(const std::string& w, std::vector<int>* out) const {
    auto c = cache_.find(w);
    if (c != cache_.end()) {
      out->insert(out->end(), c->second.begin(), c->second.end());
      return;
    }
    std::vector<std::string> sym;
    if (metaspace) {  // UTF-8 characters
      for (size_t i = 0; i < w.size();) {
        unsigned char c = (unsigned char)w[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        n = std::min(n, w.size() - i);
        sym.push_back(w.substr(i, n));
        i += n;
      }
    } else {
      const ByteMap& bm = byte_map();
      for (unsigned char b : w) sym.push_back(bm.enc[b]);
    }
    while (sym.size() > 1) {
      int best = INT_MAX;
      size_t at = 0;
      for (size_t i = 0; i + 1 < sym.size(); i++) {
        auto it = merge_rank.find(sym[i] + " " + sym[i + 1]);
        if (it != merge_rank.end() && it->second < best) {
          best = it->second;
          at = i;
        }
      }
      if (best == INT_MAX) break;
      // merge every occurrence of this pair, left to right (HF semantics)
      std::string a = sym[at], b = sym[at + 1];
      std::vector<std::string> ns;
      for (size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == a && sym[i + 1] == b) {
          ns.push_back(a + b);
          i += 2;
        } else {
          ns.push_back(sym[i++]);
        }
      }
      sym.swap(ns);
    }
    std::vector<int> ids;
    for (auto& s : sym) {
      auto it = vocab.find(s);
      if (it != vocab.end()) {
        ids.push_back(it->second);
      } else if (metaspace && byte_fallback) {
        for (unsigned char b : s) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "<0x%02X>", b);
          auto bt = vocab.find(hex);
          if (bt != vocab.end()) ids.push_back(bt->second);
          else if (unk_id >= 0) ids.push_back(unk_id);
        }
      } else if (metaspace && unk_id >= 0) {
        ids.push_back(unk_id);
      }
      // a byte-level vocab covers every byte; anything missing is dropped like HF without unk
    }
    if (cache_.size() < 200000) cache_[w] = ids;
    out->insert(out->end(), ids.begin(), ids.end());
  }
};

void add_pretokenizer(const json& pt, ByteBpeTokenizer* t, const std::string& path) {
  std::string type = pt.value("type", "");
  if (type == "Sequence") {
    for (auto& p : pt.at("pretokenizers")) add_pretokenizer(p, t, path);
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
      fail(path, "unsupported Split pre-tokenizer behaviour '" + behavior + "'");
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
  } else {
    fail(path, "unsupported pre-tokenizer type '" + type + "'");
  }
}

// SentencePiece-style tokenizer.json: the normalizer (Llama-2: Prepend U+2581 + Replace " ")
// and/or a Metaspace pre-tokenizer say how spaces are spelled. Anything else is refused by name.
void configure_metaspace(const json& nz, const json& pt, ByteBpeTokenizer* t, const std::string& path) {
  bool replaces_space = false;
  std::function<void(const json&)> norm = [&](const json& n) {
    if (n.is_null()) return;
    std::string type = n.value("type", "");
    if (type == "Sequence") {
      for (auto& q : n.at("normalizers")) norm(q);
    } else if (type == "Prepend") {
      t->ms_prepend = n.value("prepend", "");
    } else if (type == "Replace") {
      const json& pat = n.at("pattern");
      if (!pat.contains("String") || pat["String"] != " " || n.value("content", "") != kMetaspace)
        fail(path, "unsupported Replace normalizer (only \" \" -> U+2581)");
      replaces_space = true;
    } else if (type != "NFC") {
      fail(path, "unsupported normalizer '" + type + "'");
    }
  };
  norm(nz);
  bool ms_pre = false;
  std::function<void(const json&)> pre = [&](const json& p) {
    if (p.is_null()) return;
    std::string type = p.value("type", "");
    if (type == "Sequence") {
      for (auto& q : p.at("pretokenizers")) pre(q);
    } else if (type == "Metaspace") {
      if (p.value("replacement", kMetaspace) != kMetaspace) fail(path, "unsupported Metaspace replacement");
      ms_pre = true;
      std::string scheme = p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
      t->ms_prepend = scheme == "never" ? "" : kMetaspace;
      t->ms_prepend_first_only = scheme == "first";
      t->ms_split = p.value("split", true);
    } else {
      fail(path, "unsupported pre-tokenizer type '" + type + "' in a SentencePiece-style tokenizer.json");
    }
  };
  pre(pt);
  if (!replaces_space && !ms_pre)
    fail(path, "tokenizer.json is neither byte-level nor SentencePiece-style (no ByteLevel, Metaspace or space Replace)");
  t->metaspace = true;
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const std::string& path) {
  json j;
  j = parse_json(read_file(path, kMaxTokenizerBytes), path);
  auto t = std::make_unique<ByteBpeTokenizer>();
  try {
    const json& m = j.at("model");
    if (m.value("type", "") != "BPE") fail(path, "unsupported tokenizer model type '" + m.value("type", "") + "'");
    const json& pt = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json();
    bool byte_level = false;
    std::function<void(const json&)> scan = [&](const json& p) {
      if (!p.is_object()) return;
      if (p.value("type", "") == "ByteLevel") byte_level = true;
      if (p.contains("pretokenizers"))
        for (auto& q : p["pretokenizers"]) scan(q);
    };
    scan(pt);
    const json& nz = j.contains("normalizer") ? j["normalizer"] : json();
    if (byte_level) {
      if (!nz.is_null()) {
        std::string nt = nz.value("type", "");
        // NFC is accepted as identity: text that is already NFC (nearly all) tokenizes identically.
        if (nt != "NFC") fail(path, "unsupported normalizer '" + nt + "'");
      }
    } else {
      configure_metaspace(nz, pt, t.get(), path);
      t->byte_fallback = m.value("byte_fallback", false);
    }
    int max_id = -1;
    for (auto& [tok, id] : m.at("vocab").items()) {
      const int v = json_number<int>(id, path, "vocab id");
      if (v < 0) fail(path, "negative token id for '" + tok + "'");
      t->vocab[tok] = v;
      max_id = std::max(max_id, v);
    }
    for (auto& a : j.value("added_tokens", json::array())) {
      const int v = json_number<int>(a.at("id"), path, "added_tokens id");
      if (v < 0) fail(path, "negative added token id");
      t->added.push_back({a.at("content").get<std::string>(), v, a.value("special", false)});
      max_id = std::max(max_id, v);
    }
    if (max_id < 0 || max_id > (1 << 24)) fail(path, "empty or implausible vocabulary");
    t->id_to_token.assign(max_id + 1, "");
    for (auto& [tok, id] : t->vocab) t->id_to_token[id] = tok;
    for (auto& a : t->added) t->id_to_token[a.id] = a.content;
    int rank = 0;
    for (auto& mg : m.at("merges")) {
      std::string s = mg.is_string() ? mg.get<std::string>()
                                     : mg.at(0).get<std::string>() + " " + mg.at(1).get<std::string>();
      t->merge_rank.emplace(s, rank++);
    }
    if (!pt.is_null() && !t->metaspace) add_pretokenizer(pt, t.get(), path);
    if (t->metaspace && m.contains("unk_token") && m["unk_token"].is_string()) {
      auto u = t->vocab.find(m["unk_token"].get<std::string>());
      if (u != t->vocab.end()) t->unk_id = u->second;
    }
    // BOS: a TemplateProcessing post-processor that starts with a special token adds it.
    if (j.contains("post_processor") && j["post_processor"].is_object()) {
      const json& pp = j["post_processor"];
      std::function<void(const json&)> find_tp = [&](const json& p) {
        if (p.value("type", "") == "TemplateProcessing" && p.contains("single") && !p["single"].empty() &&
            p["single"][0].contains("SpecialToken")) {
          std::string tok = p["single"][0]["SpecialToken"].at("id").get<std::string>();
          for (auto& a : t->added)
            if (a.content == tok) {
              t->bos = a.id;
              t->add_bos = true;
            }
        }
        if (p.contains("processors"))
          for (auto& q : p["processors"]) find_tp(q);
      };
      find_tp(pp);
    }
  } catch (const json::exception& e) {
    fail(path, std::string("malformed tokenizer.json: ") + e.what());
  }
  return t;
}

std::unique_ptr<Tokenizer> make_bpe_from_gguf(const GGUFFile& f) {
  auto t = std::make_unique<ByteBpeTokenizer>();
  const GGUFValue& toks = f.get("tokenizer.ggml.tokens");
  const GGUFValue& merges = f.get("tokenizer.ggml.merges");
  if (toks.arr_type != GGUFType::STRING || merges.arr_type != GGUFType::STRING)
    fail(f.path(), "tokenizer.ggml.tokens/merges must be string arrays");
  t->id_to_token = toks.strs;
  for (size_t i = 0; i < toks.strs.size(); i++) t->vocab[toks.strs[i]] = (int)i;
  for (size_t i = 0; i < merges.strs.size(); i++) t->merge_rank.emplace(merges.strs[i], (int)i);
  std::string pre = f.get_string("tokenizer.ggml.pre", "gpt-2");
  if (pre == "gpt-2" || pre == "gpt2" || pre == "default") {
    t->splits.push_back(std::make_unique<RegexSplit>(kGpt2Pattern));
    t->gpt2_split = true;
  } else {
    fail(f.path(), "unsupported GGUF pre-tokenizer '" + pre + "'");
  }
  if (f.has("tokenizer.ggml.token_type")) {
    const GGUFValue& ty = f.get("tokenizer.ggml.token_type");
    for (size_t i = 0; i < ty.ints.size() && i < toks.strs.size(); i++)
      if (ty.ints[i] == 3 || ty.ints[i] == 4) t->added.push_back({toks.strs[i], (int)i, ty.ints[i] == 3});
  }
  t->bos = (int)f.get_int("tokenizer.ggml.bos_token_id", -1);
  t->eos = (int)f.get_int("tokenizer.ggml.eos_token_id", -1);
  t->add_bos = f.get_int("tokenizer.ggml.add_bos_token", 0) != 0;
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
