// SentencePiece tokenizer.model through libsentencepiece (exactly what HF LlamaTokenizer does).
#include <sentencepiece_processor.h>

#include "io/tokenizer.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    if (!file_exists(path)) fail(path, "tokenizer file not found");
    auto st = sp_.Load(path);
    if (!st.ok()) fail(path, "cannot load SentencePiece model: " + st.ToString());
    bos = sp_.bos_id();
    eos = sp_.eos_id();
    add_bos = true;
  }
  std::vector<int> encode(std::string_view text) const override {
    std::vector<int> ids;
    auto st = sp_.Encode(text, &ids);
    if (!st.ok()) fail("sentencepiece: " + st.ToString());
    return ids;
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
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

}  // namespace kt
