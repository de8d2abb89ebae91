// Shared helpers for tests: where the data lives, reading golden files, running the CLI.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/pipeline.h"
#include "util/file.h"

namespace kt::test {

inline std::string data() {
  const char* e = std::getenv("KURTAIL_DATA");
  return (e && *e) ? e : KURTAIL_TEST_DATA;
}
inline std::string tinyllama() { return data() + "/models/tinyllama-8m"; }
inline std::string golden(const std::string& f) { return tinyllama() + "/golden/" + f; }

inline std::vector<float> read_f32(const std::string& path) {
  std::string b = read_file(path, SIZE_MAX);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// max |a - b| / max |b|: relative to the tensor's scale, so near-zero entries do not dominate.
// n normal(0, sd) floats from mt19937(seed): the same values for the same seed everywhere.
inline std::vector<float> randn(size_t n, unsigned seed, float sd = 1.0f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

inline double max_rel_diff(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num = std::max(num, (double)std::fabs(a[i] - b[i]));
    den = std::max(den, (double)std::fabs(b[i]));
  }
  return num / den;
}
inline double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  return max_rel_diff(a.data(), b.data(), b.size());
}

// Greedy decoding of aidreams260K from BOS, 40 steps (../shared/data/SOURCES.md, from an
// independent numpy port of llama2.c run.c).
inline const std::vector<int>& aidreams_golden_ids() {
  static const std::vector<int> ids = {1,   319, 459, 355, 260, 275, 429, 339, 315, 374, 327, 446, 262, 421,
                                       392, 275, 280, 269, 440, 270, 283, 446, 299, 303, 266, 358, 430, 312,
                                       379, 441, 260, 446, 262, 421, 392, 275, 280, 269, 440, 270, 283};
  return ids;
}

// Quantizes `m` in place with `method` (its rotations as Recipe::set_method) at the given
// W/A/KV bits and QuaRot's quantizer defaults; no progress output. Returns the options used.
QuantizeOptions quantize_for_test(Model& m, const std::string& method, int wbits, int abits, int kvbits);

struct CmdResult {
  int code;
  std::string out, err;
};
// Runs the kurtail binary with args (a shell fragment); captures stdout and stderr.
// `prefix` goes before the binary (e.g. "OMP_NUM_THREADS=1", "timeout -s INT 3"); it runs in sh.
CmdResult run_cli(const std::string& args, const std::string& prefix = "");

// The CLI failed the documented way: exit `code`, exactly one stderr line "kurtail: ..." that
// contains `must_contain`, and docs/ERRORS.md lists that message (so the table stays true).
void expect_documented_error(const CmdResult& r, const std::string& must_contain, int code = 1);

// A fresh empty temp directory, removed by the caller (or left in /tmp).
std::string temp_dir(const std::string& tag);
// Removes every temp_dir of this process (test_main calls it after the run; a whole suite
// left ~80 GB in /tmp before). KURTAIL_KEEP_TEST_DIRS=1 keeps them for debugging.
void remove_temp_dirs();

}  // namespace kt::test
