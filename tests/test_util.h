// Shared helpers for tests: where the data lives, reading golden files, running the CLI.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "util/file.h"

namespace kt::test {

inline std::string data() {
  const char* e = std::getenv("KURTAIL_DATA");
  return (e && *e) ? e : KURTAIL_TEST_DATA;
}
inline std::string tinyllama() { return data() + "/models/tinyllama-8m"; }
inline std::string golden(const std::string& f) { return tinyllama() + "/golden/" + f; }

inline std::vector<float> read_f32(const std::string& path) {
  std::string b = read_file(path);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

struct CmdResult {
  int code;
  std::string out, err;
};
// Runs the kurtail binary with args (a shell fragment); captures stdout and stderr.
CmdResult run_cli(const std::string& args);

// A fresh empty temp directory, removed by the caller (or left in /tmp).
std::string temp_dir(const std::string& tag);

}  // namespace kt::test
