#include "util/malloc_tuning.h"

#include <cstdlib>  // defines __GLIBC__ on glibc, which the test below needs
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kt {

void fix_malloc_thresholds() {
#if defined(__GLIBC__)
  // A user's own setting wins (as with OPENBLAS_CORETYPE in util/blas_env.h): glibc reads these
  // from the environment at start-up, and mallopt would override them.
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || std::getenv("MALLOC_TRIM_THRESHOLD_") ||
      (tunables && std::strstr(tunables, "glibc.malloc.")))
    return;
  // 32 MiB is the ceiling glibc's own dynamic threshold would climb to on 64-bit; the trim
  // threshold is twice it, as glibc sets it when it moves the mmap threshold itself.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

}  // namespace kt
