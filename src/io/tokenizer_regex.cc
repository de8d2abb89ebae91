#define PCRE2_CODE_UNIT_WIDTH 8
#include "io/tokenizer_regex.h"

#include <pcre2.h>

#include <algorithm>

#include "util/error.h"
#include "util/interrupt.h"

namespace kt {

RegexSplit::RegexSplit(const std::string& pattern) {
  int err;
  PCRE2_SIZE eoff;
  code_ = pcre2_compile((PCRE2_SPTR)pattern.c_str(), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err, &eoff, nullptr);
  if (!code_) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof buf);
    fail("pre-tokenizer regex " + quote(pattern, 80) + " does not compile: " + printable((char*)buf));
  }
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE | PCRE2_JIT_PARTIAL_HARD);  // best effort
  uint32_t lookbehind = 0;
  pcre2_pattern_info(code_, PCRE2_INFO_MAXLOOKBEHIND, &lookbehind);
  context_ = 4 * ((size_t)lookbehind + 1);  // characters -> UTF-8 bytes, plus one for \b and ^
}

RegexSplit::~RegexSplit() { pcre2_code_free(code_); }

RegexStage::RegexStage(const RegexSplit& re, PieceSink* next, size_t chunk_bytes)
    : re_(re), next_(next), md_(pcre2_match_data_create_from_pattern(re.code(), nullptr)),
      mc_(pcre2_match_context_create(nullptr)), chunk_(std::max<size_t>(chunk_bytes, 1)) {
  // A pattern from a tokenizer.json must not take unbounded memory backtracking over a long
  // piece (PCRE2's default heap limit is 20 GB): 256 MiB, then a one-line error.
  pcre2_set_heap_limit(mc_, 256u << 10);
}

RegexStage::~RegexStage() {
  pcre2_match_context_free(mc_);
  pcre2_match_data_free(md_);
}

void RegexStage::append(std::string_view bytes) {
  buf_.append(bytes);
  if (buf_.size() >= retry_at_) scan(false);
}

void RegexStage::end() {
  scan(true);
  pass_gap(buf_.size());
  if (gap_open_) next_->end();
  buf_.clear();
  pos_ = fwd_ = retry_at_ = 0;
  gap_open_ = dropped_ = false;
}

// Passes gap bytes [fwd_, upto) on (the gap stays open: it ends at the next match).
void RegexStage::pass_gap(size_t upto) {
  if (upto <= fwd_) return;
  next_->append(std::string_view(buf_).substr(fwd_, upto - fwd_));
  fwd_ = upto;
  gap_open_ = true;
}

void RegexStage::scan(bool at_end) {
  const uint32_t opts = PCRE2_NO_UTF_CHECK | (dropped_ ? PCRE2_NOTBOL : 0) | (at_end ? 0 : PCRE2_PARTIAL_HARD);
  size_t steps = 0;
  while (pos_ <= buf_.size()) {
    if (++steps % 4096 == 0) check_interrupted();
    int rc = pcre2_match(re_.code(), (PCRE2_SPTR)buf_.data(), buf_.size(), pos_, opts, md_, mc_);
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (at_end) break;
      pass_gap(buf_.size());  // no match can start before the end of what has arrived
      pos_ = buf_.size();
      retry_at_ = buf_.size() + 1;
      compact();
      return;
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md_);
    if (rc == PCRE2_ERROR_PARTIAL) {  // a match may start at ov[0]: wait for more text
      pass_gap(ov[0]);
      pos_ = ov[0];
      // Retry when the undecided stretch has doubled (or a chunk arrived): linear overall.
      retry_at_ = buf_.size() + std::max(chunk_, buf_.size() - pos_);
      compact();
      return;
    }
    if (rc < 0) fail("tokenizer: pre-tokenizer regex failed on the text (PCRE2 error " + std::to_string(rc) + ")");
    size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: step one character (the gap goes on)
      if (!at_end && b == buf_.size()) break;
      pos_ = b + 1;
      while (pos_ < buf_.size() && ((unsigned char)buf_[pos_] & 0xc0) == 0x80) pos_++;
      continue;
    }
    pass_gap(b);
    if (gap_open_) next_->end();
    next_->append(std::string_view(buf_).substr(b, e - b));
    next_->end();
    gap_open_ = false;
    fwd_ = pos_ = e;
  }
  retry_at_ = buf_.size() + 1;
  if (!at_end) compact();
}

// Drops bytes nobody needs any more: everything before the lookbehind context of fwd_.
void RegexStage::compact() {
  size_t keep = fwd_ > re_.context_bytes() ? fwd_ - re_.context_bytes() : 0;
  while (keep > 0 && ((unsigned char)buf_[keep] & 0xc0) == 0x80) keep--;  // a character boundary
  if (keep < chunk_ || keep < buf_.size() / 2) return;  // amortised: erase only big prefixes
  buf_.erase(0, keep);
  pos_ -= keep;
  fwd_ -= keep;
  retry_at_ -= std::min(retry_at_, keep);
  dropped_ = true;
}

}  // namespace kt
