// Evaluation and calibration text: a file tokenized as a stream, cut into windows of ids.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/tokenizer.h"

namespace kt {

struct Windows {
  int ctx = 0;
  std::vector<int32_t> tokens;  // n * ctx ids, window-major
  int n() const { return ctx ? (int)(tokens.size() / ctx) : 0; }
  const int32_t* window(int i) const { return tokens.data() + (int64_t)i * ctx; }
};

// Reads and tokenizes a text file (BOS once at the start, as HF tokenizers do), streamed:
// 1 MiB blocks go through the tokenizer's stream, so memory is the ids plus a bounded working
// set, never the whole text. Regular files only (a FIFO or /dev/zero is refused before a byte
// is read); Ctrl-C is polled per block. Empty text is an error naming the file.
// With max_tokens > 0, reading stops once that many ids are out (the stream only emits ids of
// parts cut at safe points, so they are the first ids of the whole text): `eval
// --max-windows K` reads what K windows need, not a whole multi-GB file.
std::vector<int32_t> tokenize_file(const Tokenizer& tok, const std::string& path, size_t max_tokens = 0);
// Cuts windows; max_windows <= 0 means all. Fails if not even one window fits.
Windows make_windows(const std::vector<int32_t>& tokens, int ctx, int max_windows, const std::string& what);

}  // namespace kt
