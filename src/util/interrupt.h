// SIGINT/SIGTERM: the first signal sets a flag that long-running loops poll (Progress::update
// does, so every layer/iteration/window loop does); they throw Interrupted, the output being
// written is still a temp file or directory and is removed on the way out, and the CLI exits
// with 128 + signal. A second signal (0.5 s or more after the first) kills the process the
// ordinary way.
#pragma once
#include "util/error.h"

namespace kt {

struct Interrupted : Error {
  Interrupted(int signo, const std::string& msg) : Error(msg), signo(signo) {}
  int signo;
};

void install_interrupt_handlers();
// Throws Interrupted if a signal arrived since the handlers were installed.
void check_interrupted();

}  // namespace kt
