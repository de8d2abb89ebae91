// fix_malloc_thresholds: blocks of activation size come from the heap, not from fresh mmaps, and
// large ones still go to mmap, whatever the process allocated and freed before.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "util/malloc_tuning.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define KT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KT_ASAN 1
#endif
#endif

namespace kt {
namespace {

#if defined(__GLIBC__) && !defined(KT_ASAN)
// Number of blocks glibc holds as separate mmaps right now.
size_t mmapped_blocks() { return mallinfo2().hblks; }

TEST(MallocTuning, ActivationSizedBlocksComeFromTheHeapAndLargeOnesFromMmap) {
  const char* t = std::getenv("GLIBC_TUNABLES");
  if (std::getenv("MALLOC_MMAP_THRESHOLD_") || (t && std::strstr(t, "glibc.malloc.")))
    GTEST_SKIP() << "the environment sets malloc's thresholds itself";
  // glibc's dynamic threshold starts at 128 KiB: without the fix a fresh 1 MiB block is an mmap
  // unless something of that size was freed before; with it, the heap serves it every time.
  fix_malloc_thresholds();
  for (size_t mib : {1, 4, 16}) {
    const size_t before = mmapped_blocks();
    void* p = std::malloc(mib << 20);
    ASSERT_NE(p, nullptr);
    std::memset(p, 1, mib << 20);
    EXPECT_EQ(mmapped_blocks(), before) << mib << " MiB";
    std::free(p);
  }
  const size_t before = mmapped_blocks();
  void* big = std::malloc(48u << 20);  // above the 32 MiB threshold: its own mmap, returned on free
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(mmapped_blocks(), before + 1);
  std::free(big);
  EXPECT_EQ(mmapped_blocks(), before);
}
#endif

}  // namespace
}  // namespace kt
