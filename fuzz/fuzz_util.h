// Shared helpers for the libFuzzer targets: every parser in kurtail reads from a path (mmap),
// so each input is written to a private temp directory first. kt::Error is the expected
// outcome of bad input; anything else escaping (another exception, a signal, a sanitizer
// report) is a finding.
#pragma once
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "util/error.h"
#include "util/file.h"

namespace kt::fuzz {

inline const std::string& scratch_dir() {
  // The exit handler reads a plain char array: the std::string is destroyed before it runs.
  static char path[64];
  static const std::string dir = [] {
    std::snprintf(path, sizeof path, "/tmp/kurtail_fuzz.%d", (int)getpid());
    mkdir(path, 0700);
    std::atexit([] { std::system((std::string("rm -rf '") + path + "'").c_str()); });
    return std::string(path);
  }();
  return dir;
}

// Writes bytes to scratch_dir()/name (plain write: the atomic writer's fsync would dominate).
// `name` may name a file in a subdirectory the target created.
inline std::string put(const std::string& name, std::string_view bytes) {
  std::string p = scratch_dir() + "/" + name;
  FILE* f = std::fopen(p.c_str(), "wb");
  if (!f) std::abort();
  if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
  std::fclose(f);
  return p;
}

inline void remove_file(const std::string& name) { unlink((scratch_dir() + "/" + name).c_str()); }

// Multi-file inputs: [u32 length][bytes] per part, the last part takes whatever is left.
// Missing parts are empty. make_parts() builds seeds in the same layout.
inline std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, int nparts) {
  std::vector<std::string_view> parts;
  size_t pos = 0;
  for (int i = 0; i < nparts; i++) {
    if (i == nparts - 1) {
      parts.emplace_back(reinterpret_cast<const char*>(data) + pos, size - pos);
      break;
    }
    uint32_t len = 0;
    if (size - pos >= 4) {
      std::memcpy(&len, data + pos, 4);
      pos += 4;
    }
    len = (uint32_t)std::min<size_t>(len, size - pos);
    parts.emplace_back(reinterpret_cast<const char*>(data) + pos, len);
    pos += len;
  }
  return parts;
}

inline std::string make_parts(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); i++) {
    if (i + 1 < parts.size()) {
      uint32_t len = (uint32_t)parts[i].size();
      out.append(reinterpret_cast<const char*>(&len), 4);
    }
    out += parts[i];
  }
  return out;
}

// Seeds: a target may define `std::vector<std::string> fuzz_seeds()` (valid inputs made with
// kurtail's own writers); KT_FUZZ_WRITE_SEEDS=DIR makes the binary write them and exit.
void write_seeds_if_asked(const std::vector<std::string>& (*seeds)());

}  // namespace kt::fuzz

// Defines a target's LLVMFuzzerInitialize: write its seeds (`fn`, or nullptr) when asked.
#define KT_FUZZ_SEEDS(fn)                               \
  extern "C" int LLVMFuzzerInitialize(int*, char***) { \
    kt::fuzz::write_seeds_if_asked(fn);                 \
    return 0;                                           \
  }
