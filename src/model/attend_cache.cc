#pragma GCC diagnostic ignored "-Wpsabi"  // 64-byte vectors passed between static inline functions only
// GCC 12 reports the undefined pass-through operands inside its own AVX-512 intrinsics
// (_mm512_cvtepi32_ps and friends) as maybe-uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "model/attend_cache.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <immintrin.h>
#include <limits>
#include <vector>

#include "kernels/packed.h"
#include "kernels/vmath.h"
#include "util/error.h"

namespace kt {

// One copy of the loops per instruction set, chosen at run time like the GEMM kernels.
// KT_ATTEND_ISA tells the copy which intrinsics it may use (0 none, 1 AVX2, 2 AVX-512): GCC's
// target pragma enables the instructions but does not define __AVX2__ / __AVX512F__. clang
// ignores that pragma (it builds only the sanitizer CI step here), so its copies use none.
#if defined(__clang__)
#define KT_ATTEND_ISA_AVX2 0
#define KT_ATTEND_ISA_AVX512 0
#else
#define KT_ATTEND_ISA_AVX2 1
#define KT_ATTEND_ISA_AVX512 2
#endif
#define KT_ATTEND_NS attend_portable
#define KT_ATTEND_ISA 0
#include "model/attend_cache_impl.inc"
#undef KT_ATTEND_ISA
#undef KT_ATTEND_NS

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KT_ATTEND_NS attend_avx2
#define KT_ATTEND_ISA KT_ATTEND_ISA_AVX2
#include "model/attend_cache_impl.inc"
#undef KT_ATTEND_ISA
#undef KT_ATTEND_NS
#pragma GCC pop_options

#pragma GCC push_options
// (VNNI too: this copy runs only for Kernel::Vnni / Amx, and KDot::Q8's dots use vpdpbusd)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,fma")
#define KT_ATTEND_NS attend_avx512
#define KT_ATTEND_ISA KT_ATTEND_ISA_AVX512
#include "model/attend_cache_impl.inc"
#undef KT_ATTEND_ISA
#undef KT_ATTEND_NS
#pragma GCC pop_options

bool attend_cache_has_q8() {
  const Kernel k = active_kernel();
  return KT_ATTEND_ISA_AVX512 == 2 && (k == Kernel::Vnni || k == Kernel::Amx);
}

void attend_cache(const ModelSpec& s, const float* q, const KVCache& cache, int layer, int nseq, int ntok, int qpos0,
                  int window, float* out) {
  if (ntok < 1 || ntok > kAttendCacheMaxTokens || qpos0 < 0 || qpos0 + ntok > cache.max_len || nseq > cache.nseq ||
      s.head_dim != cache.head_dim || s.kv_dim() != cache.kv_dim || s.n_heads % s.n_kv_heads != 0)
    fail("attend_cache: queries or model shape do not fit the cache");
  switch (active_kernel()) {
    case Kernel::Vnni:
    case Kernel::Amx: return attend_avx512::attend_cache(s, q, cache, layer, nseq, ntok, qpos0, window, out);
    case Kernel::Avx2: return attend_avx2::attend_cache(s, q, cache, layer, nseq, ntok, qpos0, window, out);
    case Kernel::Scalar: break;
  }
  attend_portable::attend_cache(s, q, cache, layer, nseq, ntok, qpos0, window, out);
}

}  // namespace kt
