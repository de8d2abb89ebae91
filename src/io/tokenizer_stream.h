// Shared streaming machinery of the tokenizers (internal to src/io/tokenizer_*.cc).
//
// Where a text may be cut (the boundary rule, docs/ERRORS.md "Slow paths"): the SentencePiece
// kinds (tokenizer.model through libsentencepiece, score-merge SPM vocabularies, and
// SentencePiece-style tokenizer.json without a Metaspace split) are cut before a single space
// that has a printable non-space ASCII byte on both sides ("word word"), and only when no
// vocabulary piece has the space symbol after a non-space character: then no piece can span
// the cut, every algorithm in use (BPE merges, unigram Viterbi, llama.cpp's score merges)
// segments both sides independently, and the part after the cut starts with the same space
// symbol it has in the whole text. Byte-level BPE is cut where its own pre-tokenizer puts a
// piece boundary (streamed regex matching, tokenizer_regex.h) and outside added tokens.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer.h"

namespace kt {

// A cut position p in buf (0 < p, buf[p] == ' ') with printable non-space ASCII at p-1 and
// p+1; the last such p at or after `from`, or 0.
size_t last_space_cut(std::string_view buf, size_t from);

// True if `piece` contains `space` only in its leading run (or not at all).
bool space_only_leading(std::string_view piece, std::string_view space);

// Buffers text and encodes it part by part at cuts found by `cut(buf, from)` (0: none).
// encode_part(part, first, out): `first` is the part that starts the text.
class CutStream : public TokenStream {
 public:
  using CutFn = std::function<size_t(std::string_view, size_t)>;
  using PartFn = std::function<void(std::string_view, bool, std::vector<int>*)>;
  CutStream(size_t chunk_bytes, CutFn cut, PartFn encode_part)
      : chunk_(chunk_bytes ? chunk_bytes : 1), next_try_(chunk_), cut_(std::move(cut)), part_(std::move(encode_part)) {}
  void feed(std::string_view bytes, std::vector<int>* out) override;
  void finish(std::vector<int>* out) override;

 private:
  std::string buf_;
  size_t chunk_, next_try_, searched_ = 0;
  bool first_ = true;
  CutFn cut_;
  PartFn part_;
};

}  // namespace kt
