// Progress reporting on stderr: a live line on a TTY, sparse plain lines otherwise.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace kt {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  // done = units finished so far; tokens = tokens processed so far (for tokens/s).
  void update(int64_t done, int64_t tokens, const std::string& extra = "");
  void finish(const std::string& extra = "");

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
  int64_t done_ = 0, tokens_ = 0;
  std::string line(const std::string& extra) const;
};

double seconds_since(std::chrono::steady_clock::time_point t0);
// CPU seconds this process has used so far (all threads): on a shared machine a cost that wall
// time overstates by however many other programs run.
double process_cpu_seconds();
// Peak resident set size of this process in MiB.
double peak_rss_mib();

}  // namespace kt
