#include "util/malloc_tuning.h"

#include <cstdlib>  // defines __GLIBC__ on glibc, which the test below needs

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kt {

void fix_malloc_thresholds() {
#if defined(__GLIBC__)
  // 32 MiB is the ceiling glibc's own dynamic threshold would climb to on 64-bit; the trim
  // threshold is twice it, as glibc sets it when it moves the mmap threshold itself.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

}  // namespace kt
