#include "util/blas_env.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

extern "C" char* openblas_get_corename(void);

namespace kt {

void ensure_runtime_env(int argc, char** argv) {
  if (std::getenv("KURTAIL_NO_REEXEC")) return;
  bool change = false;
  std::string core = openblas_get_corename() ? openblas_get_corename() : "";
  bool generic = core.empty() || strcasecmp(core.c_str(), "prescott") == 0 || strcasecmp(core.c_str(), "core2") == 0 ||
                 strcasecmp(core.c_str(), "nehalem") == 0;
  if (generic && !std::getenv("OPENBLAS_CORETYPE")) {
    __builtin_cpu_init();
    const char* want = __builtin_cpu_supports("avx512f")  ? "SkylakeX"
                       : __builtin_cpu_supports("avx2") ? "Haswell"
                                                        : nullptr;
    if (want) {
      setenv("OPENBLAS_CORETYPE", want, 1);
      change = true;
    }
  }
  // OMP_WAIT_POLICY is left to libgomp's default (spin a while, then sleep; less spinning when
  // oversubscribed). It used to be set to passive, when OpenBLAS's own spinning pthreads shared
  // the cores with kurtail's OpenMP threads; OpenBLAS now runs single-threaded inside kurtail's
  // OpenMP tiles (kernels/gemm.h), and passive waits made every parallel region a futex wake-up
  // (decode 2-3x slower: docs/RESULTS.md).
  if (!change) return;
  setenv("KURTAIL_NO_REEXEC", "1", 1);  // never loop
  execv("/proc/self/exe", argv);
  // exec failed: carry on with the environment we have.
}

}  // namespace kt
