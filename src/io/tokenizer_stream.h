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
// A stretch of kMaxUncutBytes with no such cut (no normal text has one: it is a megabyte
// without "word word") is cut at a UTF-8 character boundary anyway, so memory stays bounded;
// the ids next to such a forced cut may differ from encoding the stretch whole.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "io/tokenizer.h"

namespace kt {

inline constexpr size_t kMaxUncutBytes = 1u << 20;

// The largest UTF-8 character boundary <= p in buf (p itself at the end of a complete character).
size_t utf8_boundary(std::string_view buf, size_t p);

// A cut position p in buf (0 < p, buf[p] == ' ') with printable non-space ASCII at p-1 and
// p+1; the last such p at or after `from`, or 0.
size_t last_space_cut(std::string_view buf, size_t from);

// True if `piece` contains `space` only in its leading run (or not at all).
bool space_only_leading(std::string_view piece, std::string_view space);

// How a part of the text begins.
enum class PartStart { kText, kCut, kForced };  // start of text | at a cut | at a forced cut

// Buffers text and encodes it part by part at cuts found by `cut(buf, from)` (0: none), or at
// a forced cut after kMaxUncutBytes without one.
class CutStream : public TokenStream {
 public:
  using CutFn = std::function<size_t(std::string_view, size_t)>;
  using PartFn = std::function<void(std::string_view, PartStart, std::vector<int>*)>;
  CutStream(size_t chunk_bytes, CutFn cut, PartFn encode_part)
      : chunk_(chunk_bytes ? chunk_bytes : 1), next_try_(chunk_), cut_(std::move(cut)), part_(std::move(encode_part)) {}
  void feed(std::string_view bytes, std::vector<int>* out) override;
  void finish(std::vector<int>* out) override;

 private:
  std::string buf_;
  size_t chunk_, next_try_;
  PartStart next_start_ = PartStart::kText;
  CutFn cut_;
  PartFn part_;
};

}  // namespace kt
