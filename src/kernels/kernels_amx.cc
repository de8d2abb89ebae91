// AMX-INT8 GEMM for prefill (Intel Sapphire Rapids and later): the same float result as the
// AVX-512 VNNI kernel, bit for bit, from the tile unit's 16 x 16 x 64 int8 products.
//
// The packed layout (kernels/packed.h) was made for vpdpbusd: in one (tile, k8) step the low
// nibbles are 16 channels x 4 consecutive K, which is exactly one row of an AMX B tile ("VNNI
// layout": row kk holds K 4kk..4kk+3 of 16 columns), and the high nibbles are the next row. A Q4
// B tile (16 rows = 64 K) is 8 steps unpacked to signed bytes (u - 8); a Q8 B tile is 8 steps as
// stored. Activation codes are signed bytes [M, Kp], so tdpbssd gives the exact int32 dot
// products without VNNI's unsigned-operand corrections, and the float epilogue per weight group
// is the VNNI kernel's, operation for operation.
//
// Blocking: 4 accumulator tiles (32 rows x 32 columns), 2 A and 2 B tiles. Threads take panels
// of columns; a panel's B tiles for the whole K are unpacked once into a thread buffer sized to
// stay in L2 and reused by every block of 32 rows.
//
// Linux hands a process the 8 KiB tile state only on request (arch_prctl ARCH_REQ_XCOMP_PERM);
// amx_usable() asks once and reports whether it was granted.
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/int_gemm_epilogue.h"
#include "kernels/packed.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define KT_AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vnni,fma,amx-tile,amx-int8")))

namespace kt {

bool amx_usable() {
  static const bool ok = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    const bool tile = (d >> 24) & 1, int8 = (d >> 25) & 1;
    if (!tile || !int8) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ok;
}

bool amx_fits(const QuantizedActs& a, const PackedWeight& w) {
  // Q6 (the 6-bit head) has no B-tile unpacker here: it runs on the VNNI kernel.
  return (w.type == QType::Q4 || w.type == QType::Q8) && a.M >= kAmxMinRows && w.Kp % 64 == 0 && w.group % 64 == 0 && a.Kp == w.Kp;
}

namespace {

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// tmm0..3: C (int32 16 x 16), tmm4..5: A (16 rows x 64 codes), tmm6..7: B (16 rows x 64 bytes)
KT_AMX_TARGET void configure_tiles() {
  TileConfig c;
  for (int t = 0; t < 8; t++) c.rows[t] = 16, c.colsb[t] = 64;
  _tile_loadconfig(&c);
}

constexpr int kTileBytes = 1024;  // one B tile: 16 rows x 64 bytes
constexpr size_t kPanelBudget = 1 << 20;  // unpacked B bytes per thread (half an L2)

// Unpacks packed tile `tile` (16 channels), K tiles [0, KT), into B tiles at dst (KT x 1 KiB).
template <QType T>
KT_AMX_TARGET void unpack_b(const PackedWeight& w, int tile, int KT, int8_t* dst) {
  constexpr size_t step = packed_step_size(T);
  const uint8_t* src = &w.data[(size_t)tile * (w.Kp / 8) * step];
  if constexpr (T == QType::Q8) {  // already 8 steps x (lo, hi) = 16 rows of 64 bytes per K tile
    std::memcpy(dst, src, (size_t)KT * kTileBytes);
  } else {
    const __m512i lo4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    for (size_t s = 0; s < (size_t)KT * 8; s++) {
      const __m512i b = _mm512_loadu_si512(src + s * 64);
      _mm512_store_si512(dst + s * 128, _mm512_sub_epi8(_mm512_and_si512(b, lo4), eight));
      _mm512_store_si512(dst + s * 128 + 64, _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(b, 4), lo4), eight));
    }
  }
}

// Accumulates the group's K tiles [k0, k1) for 32 rows at A (row stride lda) and NB (1 or 2) B
// tiles, then applies the VNNI kernel's per-group float step to fsum [32][32].
template <int NB>
KT_AMX_TARGET void group_block(const int8_t* A, size_t lda, const int8_t* B0, const int8_t* B1, int k0, int k1,
                               const float* scales_g, int gi, float (*fsum)[32]) {
  _tile_zero(0);
  _tile_zero(1);
  if constexpr (NB == 2) {
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int kt = k0; kt < k1; kt++) {
    _tile_loadd(4, A + (size_t)kt * 64, lda);
    _tile_loadd(5, A + 16 * lda + (size_t)kt * 64, lda);
    _tile_loadd(6, B0 + (size_t)kt * kTileBytes, 64);
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 5, 6);
    if constexpr (NB == 2) {
      _tile_loadd(7, B1 + (size_t)kt * kTileBytes, 64);
      _tile_dpbssd(2, 4, 7);
      _tile_dpbssd(3, 5, 7);
    }
  }
  alignas(64) int32_t c[4][16][16];
  _tile_stored(0, c[0], 64);
  _tile_stored(1, c[1], 64);
  if constexpr (NB == 2) {
    _tile_stored(2, c[2], 64);
    _tile_stored(3, c[3], 64);
  }
  // the VNNI kernel's per-group step (int_gemm_epilogue.h)
  for (int t = 0; t < NB; t++) {
    const __m512 sw = _mm512_loadu_ps(scales_g + 16 * t);
    for (int r = 0; r < 32; r++) int_epilogue_group(&fsum[r][16 * t], sw, _mm512_load_si512(c[2 * t + r / 16][r % 16]), gi);
  }
}

// One thread's share: the tile state is per thread, so each thread configures its tiles and
// takes panels from the enclosing parallel region's worksharing loop. (A separate function, not
// the region's body: clang outlines a parallel region into a function without this target.)
template <QType T>
KT_AMX_TARGET void amx_thread(const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y) {
  const int tiles = w.Np / 16, KT = w.Kp / 64, G = w.groups(), gkt = w.group / 64;
  // columns per panel: whole pairs of 16-column tiles whose unpacked K fits the budget
  const int pair_bytes = 2 * KT * kTileBytes;
  const int pairs_per_panel = std::max(1, (int)(kPanelBudget / pair_bytes));
  const int panel_tiles = 2 * pairs_per_panel, panels = (tiles + panel_tiles - 1) / panel_tiles;
  const int mblocks = (a.M + 31) / 32;
  const size_t lda = (size_t)a.Kp;
  configure_tiles();
  std::vector<int8_t> panel_buf((size_t)panel_tiles * KT * kTileBytes + 64);
  int8_t* panel = (int8_t*)(((uintptr_t)panel_buf.data() + 63) & ~(uintptr_t)63);
  std::vector<int8_t> tail;  // the last rows, zero-padded to 32
  alignas(64) float fsum[32][32];
#pragma omp for schedule(static)
  for (int p = 0; p < panels; p++) {
    const int t0 = p * panel_tiles, nt = std::min(panel_tiles, tiles - t0);
    for (int t = 0; t < nt; t++) unpack_b<T>(w, t0 + t, KT, panel + (size_t)t * KT * kTileBytes);
    for (int mb = 0; mb < mblocks; mb++) {
      const int m0 = mb * 32, mr = std::min(32, a.M - m0);
      const int8_t* A = &a.q[(size_t)m0 * lda];
      if (mr < 32) {
        if (tail.empty()) tail.assign(32 * lda, 0);
        std::memcpy(tail.data(), A, (size_t)mr * lda);
        std::memset(tail.data() + (size_t)mr * lda, 0, (32 - mr) * lda);
        A = tail.data();
      }
      for (int tp = 0; tp < nt; tp += 2) {
        const int nb = std::min(2, nt - tp);
        const int8_t* B0 = panel + (size_t)tp * KT * kTileBytes;
        const int8_t* B1 = B0 + (size_t)KT * kTileBytes;
        const int n0 = (t0 + tp) * 16;
        for (int gi = 0; gi < G; gi++) {
          const float* sg = &w.scales_gn[(size_t)gi * w.Np + n0];
          if (nb == 2) group_block<2>(A, lda, B0, B1, gi * gkt, (gi + 1) * gkt, sg, gi, fsum);
          else group_block<1>(A, lda, B0, B1, gi * gkt, (gi + 1) * gkt, sg, gi, fsum);
        }
        // y = s_x[m] * fsum (+ bias), masked past N, as the VNNI kernel does it
        for (int r = 0; r < mr; r++) {
          const __m512 sx = _mm512_set1_ps(a.scale[m0 + r]);
          for (int t = 0; t < nb; t++) {
            const int c0 = n0 + 16 * t;
            if (c0 >= w.N) continue;
            const __mmask16 mask = w.N - c0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (w.N - c0)) - 1);
            int_epilogue_store(y + (size_t)(m0 + r) * w.N + c0, sx, &fsum[r][16 * t], bias ? bias + c0 : nullptr, mask);
          }
        }
      }
    }
  }
  _tile_release();
}

template <QType T>
void gemm_f32_amx_t(const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y) {
#pragma omp parallel if ((int64_t)a.M * w.Np * w.Kp > (1 << 20))
  amx_thread<T>(a, w, bias, y);
}

}  // namespace

void gemm_f32_amx(const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y) {
  if (w.type == QType::Q4) return gemm_f32_amx_t<QType::Q4>(a, w, bias, y);
  gemm_f32_amx_t<QType::Q8>(a, w, bias, y);
}

}  // namespace kt
