// One error type for everything a user can get wrong (bad file, bad option).
// The CLI prints e.what() as a single line and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace kt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Untrusted text (a tensor name, a JSON key, a path from a file) made safe for a one-line
// message: bytes outside printable ASCII become \xNN (so no escape sequence reaches a
// terminal and no newline splits the line), and text longer than `max_bytes` is cut with
// "...(N bytes)". printable() has no quotes; quote() wraps the result in single quotes.
std::string printable(std::string_view s, size_t max_bytes = 200);
std::string quote(std::string_view s, size_t max_bytes = 200);

// "PATH: problem" — every input error names the file it is about. The path is escaped
// (it may come from a file: a shard name in an index, a tokenizer path in a recipe).
// A number for a message: %.6g.
std::string fmt_num(double v);

[[noreturn]] inline void fail(const std::string& path, const std::string& problem) {
  throw Error(printable(path, 4096) + ": " + problem);
}
[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

}  // namespace kt
