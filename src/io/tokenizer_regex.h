// Pre-tokenizer regex splits (HF "Isolated": matches and the gaps between them are pieces),
// whole or streamed. Internal to the byte-level BPE tokenizer.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

typedef struct pcre2_real_code_8 pcre2_code_8;
typedef struct pcre2_real_match_data_8 pcre2_match_data_8;
typedef struct pcre2_real_match_context_8 pcre2_match_context_8;

namespace kt {

// Receives a stream of pieces: bytes of the current piece (possibly in several calls), then end().
class PieceSink {
 public:
  virtual ~PieceSink() = default;
  virtual void append(std::string_view bytes) = 0;
  virtual void end() = 0;
};

class RegexSplit {
 public:
  explicit RegexSplit(const std::string& pattern);  // fails naming the pattern's problem
  ~RegexSplit();
  RegexSplit(const RegexSplit&) = delete;
  RegexSplit& operator=(const RegexSplit&) = delete;

  // Bytes of lookbehind context a streamed match needs before its start position.
  size_t context_bytes() const { return context_; }
  pcre2_code_8* code() const { return code_; }

 private:
  pcre2_code_8* code_ = nullptr;
  size_t context_ = 4;
};

// Splits each incoming piece with `re` and passes the sub-pieces to `next`, as the text
// arrives. Exactness: a match (or a gap) is passed on only when it is final whatever text
// follows (PCRE2_PARTIAL_HARD reports a match that reached the end of the bytes so far as
// partial), and later searches keep the lookbehind context before their start, so the pieces
// are those of splitting the whole piece at once (PCRE2's documented multi-segment matching).
// Gap bytes are passed on as soon as no match can start before them. Input must be valid
// UTF-8 cut at character boundaries; the output is cut at character boundaries too.
class RegexStage : public PieceSink {
 public:
  RegexStage(const RegexSplit& re, PieceSink* next, size_t chunk_bytes);
  ~RegexStage() override;
  RegexStage(const RegexStage&) = delete;
  RegexStage& operator=(const RegexStage&) = delete;
  void append(std::string_view bytes) override;
  void end() override;

 private:
  void scan(bool at_end);
  void pass_gap(size_t upto);
  void compact();

  const RegexSplit& re_;
  PieceSink* next_;
  pcre2_match_data_8* md_;
  pcre2_match_context_8* mc_;
  size_t chunk_;
  std::string buf_;
  size_t pos_ = 0, fwd_ = 0, retry_at_ = 0;
  bool gap_open_ = false, dropped_ = false;
};

}  // namespace kt
