#include "util/interrupt.h"

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <ctime>

namespace kt {

namespace {

volatile std::sig_atomic_t g_signal = 0;
std::atomic<int64_t> g_first_ms{0};  // CLOCK_MONOTONIC ms of the first signal (lock-free)
static_assert(std::atomic<int64_t>::is_always_lock_free);

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // async-signal-safe
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

extern "C" void on_signal(int signo) {
  if (g_signal == 0) {
    g_signal = signo;
    g_first_ms = now_ms();
    return;
  }
  // A second signal a moment later (a user pressing Ctrl-C again): die as the signal says.
  // One arriving in the same instant is a duplicate (`timeout` and process managers signal
  // the child and then its whole group) and is ignored.
  if (now_ms() - g_first_ms >= 500) {
    std::signal(signo, SIG_DFL);
    std::raise(signo);
  }
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

void check_interrupted() {
  int s = g_signal;
  if (s == 0) return;
  throw Interrupted(s, std::string("interrupted by ") + (s == SIGINT ? "SIGINT" : s == SIGTERM ? "SIGTERM" : "a signal") +
                           "; stopped before writing any output");
}

}  // namespace kt
