#include "util/progress.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "util/interrupt.h"

namespace kt {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double process_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;  // Linux reports KiB
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(isatty(2)) {
  start_ = last_print_ = std::chrono::steady_clock::now();
}

std::string Progress::line(const std::string& extra) const {
  double el = seconds_since(start_);
  double tps = el > 0 ? tokens_ / el : 0;
  double eta = (done_ > 0 && total_ > done_) ? el * (total_ - done_) / done_ : 0;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s %lld/%lld  %.0f tok/s  elapsed %.1fs  ETA %.1fs", label_.c_str(),
                (long long)done_, (long long)total_, tps, el, eta);
  std::string s = buf;
  if (!extra.empty()) s += "  " + extra;
  return s;
}

void Progress::update(int64_t done, int64_t tokens, const std::string& extra) {
  check_interrupted();
  done_ = done;
  tokens_ = tokens;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_print_).count();
  if (tty_) {
    if (since < 0.2 && done_ < total_) return;
    std::fprintf(stderr, "\r\033[K%s", line(extra).c_str());
  } else {
    if (since < 10.0 && done_ < total_) return;  // keep logs short when not on a TTY
    std::fprintf(stderr, "%s\n", line(extra).c_str());
  }
  last_print_ = now;
  std::fflush(stderr);
}

void Progress::finish(const std::string& extra) {
  if (!enabled_) return;
  if (tty_) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr, "%s  done\n", line(extra).c_str());
}

}  // namespace kt
