// Process start-up: glibc malloc's thresholds fixed, so that speed does not depend on what the
// process happened to allocate and free before.
#pragma once

namespace kt {

// glibc serves blocks above M_MMAP_THRESHOLD with fresh mmaps (page faults and kernel zeroing
// on every use) and, by default, raises that threshold to the size of the largest mmapped
// block freed so far. A forward pass allocates its activations (hundreds of KiB to tens of
// MiB) anew for every layer, so whether they page-fault depended on the process's history:
// the same proxy prefill ran ~30 % slower after loading a 6-bit head than after an 8-bit one
// (docs/RESULTS.md, session 16). Fixing the thresholds (blocks up to 32 MiB from the heap,
// up to 64 MiB of free heap top kept) makes it the same every time. No-op outside glibc, and
// when the user set malloc's own environment (GLIBC_TUNABLES=glibc.malloc.*, MALLOC_*_THRESHOLD_).
void fix_malloc_thresholds();

}  // namespace kt
