// SentencePiece tokenizer.model through libsentencepiece (exactly what HF LlamaTokenizer does).
#include <sentencepiece_processor.h>

#include "io/tokenizer.h"
#include "io/tokenizer_stream.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    if (!file_exists(path)) fail(path, "tokenizer file not found");
    // Read through read_file (regular files only, size-capped), never by the library itself:
    // a FIFO or /dev/zero named tokenizer.model must not block or exhaust memory.
    auto st = sp_.LoadFromSerializedProto(read_file(path, kMaxTokenizerBytes));
    if (!st.ok()) fail(path, "cannot load SentencePiece model: " + printable(st.ToString()));
    bos = sp_.bos_id();
    eos = sp_.eos_id();
    add_bos = true;
    cuttable_ = spaces_are_word_starts();
  }
  std::unique_ptr<TokenStream> stream(size_t chunk_bytes) const override {
    if (!cuttable_) return std::make_unique<CutStream>(chunk_bytes, [](std::string_view, size_t) { return size_t(0); },
                                                       [this](std::string_view t, PartStart, std::vector<int>* o) { encode_into(t, o); });
    // A part after a cut starts with the space; the model's dummy prefix supplies its U+2581.
    return std::make_unique<CutStream>(chunk_bytes, last_space_cut, [this](std::string_view t, PartStart st, std::vector<int>* o) {
      encode_into(st == PartStart::kCut ? t.substr(1) : t, o);
    });
  }
  std::string piece(int prev, int id) const override {
    if (id < 0 || id >= sp_.GetPieceSize()) return "";
    if (sp_.IsControl(id)) return "";
    std::string p = sp_.IdToPiece(id);
    unsigned char byte;
    if (sp_.IsByte(id) && parse_byte_piece(p, &byte)) return std::string(1, (char)byte);
    std::string out;
    for (size_t i = 0; i < p.size();) {
      if (p.compare(i, 3, "\xe2\x96\x81") == 0) {
        out += ' ';
        i += 3;
      } else {
        out += p[i++];
      }
    }
    if (prev == bos && !out.empty() && out[0] == ' ') out.erase(0, 1);
    return out;
  }
  int vocab_size() const override { return sp_.GetPieceSize(); }
  bool export_vocab(VocabExport* v) const override {
    v->model = "llama";
    const int n = sp_.GetPieceSize();
    for (int i = 0; i < n; i++) {
      v->tokens.push_back(sp_.IdToPiece(i));
      v->scores.push_back(sp_.GetScore(i));
      v->types.push_back(sp_.IsUnknown(i) ? 2 : sp_.IsControl(i) ? 3 : sp_.IsUnused(i) ? 5 : sp_.IsByte(i) ? 6 : 1);
    }
    v->add_space_prefix = true;
    return true;
  }
  std::string kind() const override { return "sentencepiece"; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  bool cuttable_ = false;

  void encode_into(std::string_view text, std::vector<int>* out) const {
    std::vector<int> ids;
    auto st = sp_.Encode(text, &ids);
    if (!st.ok()) fail("sentencepiece: " + printable(st.ToString()));
    out->insert(out->end(), ids.begin(), ids.end());
  }
  // The text may be cut before " " in "x y" (tokenizer_stream.h) when no piece has U+2581 after
  // another character (so no piece spans the cut) and the model adds a dummy U+2581 prefix
  // (so "y..." encodes as it does after the space). Both are checked, not assumed.
  bool spaces_are_word_starts() const {
    for (int i = 0; i < sp_.GetPieceSize(); i++)
      if (!space_only_leading(sp_.IdToPiece(i), "\xe2\x96\x81")) return false;
    std::vector<int> a, b, ab;
    if (!sp_.Encode("a", &a).ok() || !sp_.Encode("b", &b).ok() || !sp_.Encode("a b", &ab).ok() || a.empty()) return false;
    if (sp_.IdToPiece(a[0]).rfind("\xe2\x96\x81", 0) != 0) return false;
    a.insert(a.end(), b.begin(), b.end());
    return a == ab;
  }
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace kt
