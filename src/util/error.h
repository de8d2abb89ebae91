// One error type for everything a user can get wrong (bad file, bad option).
// The CLI prints e.what() as a single line and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace kt {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// "PATH: problem" — every input error names the file it is about.
[[noreturn]] inline void fail(const std::string& path, const std::string& problem) {
  throw Error(path + ": " + problem);
}
[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

}  // namespace kt
