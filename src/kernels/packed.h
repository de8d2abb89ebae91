// Packed integer weight formats and the integer GEMM that runs them.
//
// Layout (both types): output channels in tiles of 16, K in steps of 8. Per (tile, k8) step:
//  - Q4: 64 bytes; byte 4c+j (c = channel in tile 0..15, j = 0..3) holds channel c's weight at
//        k8*8+j in the low nibble and at k8*8+4+j in the high nibble, each stored as u = w + 8
//        (w in [-8, 7]). One 32-bit lane = 4 consecutive K of one channel: vpdpbusd-ready.
//  - Q6: 96 bytes; the first 64 are a Q4 step of the low 4 bits of u = w + 32 (w in [-32, 31]),
//        the last 32 hold the high 2 bits of u, four per byte (Q6Step): expanded into the bits
//        4-5 of the nibble vectors with two shifts and a mask, they make u for vpdpbusd.
//  - Q8: 128 bytes; the two 64-byte halves hold k8*8+0..3 and k8*8+4..7 as signed bytes.
// N is padded to a multiple of 16 (zero weights) and K to a multiple of 8 (zero weights).
// Scales are fp32, per output channel (group = K) or per group of `group` along K.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/wtype.h"
#include "util/row_transform.h"

namespace kt {

// The packed weight types are rows of the weight-type table (kernels/wtype.h); the kernels
// name them QType. A PackedWeight's type is always a packed row (Q4 or Q8), never F32.
using QType = WType;

// Amx: the VNNI kernels, with the AMX-INT8 tile GEMM for products of kAmxMinRows rows or more
// (prefill); it gives the VNNI kernel's float results bit for bit.
enum class Kernel { Scalar, Avx2, Vnni, Amx };
const char* kernel_name(Kernel k);
// Best kernel this CPU supports, unless KURTAIL_KERNEL=scalar|avx2|vnni|amx forces one.
Kernel active_kernel();
// Forces the kernel used by active_kernel() (tests run every supported one).
void set_active_kernel(Kernel k);
bool kernel_supported(Kernel k);

// One (tile, k8) step: 16 output channels x 8 consecutive K. These structs are the layout;
// pack_weights_ref / unpack_weights_ref are its scalar reference and the kernels read the
// same bytes as one (Q4), one and a half (Q6) or two (Q8) 64-byte vectors.
struct Q4Step {
  // u[c][j]: low nibble = w[c, k8*8 + j] + 8, high nibble = w[c, k8*8 + 4 + j] + 8
  uint8_t u[16][4];
};
static_assert(sizeof(Q4Step) == 64, "a Q4 step is one zmm register");
// Q6 (after llama.cpp's Q6_K, which also splits 6-bit codes into a nibble plane and a 2-bit
// plane): u = w + 32 in [0, 63]. lo is a Q4Step of u & 15; hi[i] (i = 0..31) holds u >> 4 of
//   bits 0-1: lo byte i's low-nibble weight (K offset j),   bits 2-3: lo byte i+32's low-nibble weight,
//   bits 4-5: lo byte i's high-nibble weight (K offset 4+j), bits 6-7: lo byte i+32's high-nibble weight,
// so hi broadcast to both 256-bit halves and shifted left by 4 / 2 (low nibbles, first / second
// half) or right by 0 / 2 (high nibbles) puts every weight's high bits at bits 4-5 of its byte.
struct Q6Step {
  uint8_t lo[16][4];
  uint8_t hi[32];
};
static_assert(sizeof(Q6Step) == 96, "a Q6 step is one zmm register and one ymm register");
struct Q8Step {
  int8_t lo[16][4];  // w[c, k8*8 + j]
  int8_t hi[16][4];  // w[c, k8*8 + 4 + j]
};
static_assert(sizeof(Q8Step) == 128, "a Q8 step is two zmm registers");
inline size_t step_bytes(QType t) { return wtype_traits(t).step_bytes; }
// The same two facts as compile-time values, for the kernels' templates (tests/wtype_test.cc
// checks them against the table): a step's size, and the offset the nibble types (Q4, Q6) add
// to a code so that vpdpbusd / vpmaddubsw see unsigned weights (u = w + offset = w - qmin).
constexpr size_t packed_step_size(QType t) {
  return t == QType::Q4 ? sizeof(Q4Step) : t == QType::Q6 ? sizeof(Q6Step) : sizeof(Q8Step);
}
constexpr int nibble_offset(QType t) { return t == QType::Q4 ? 8 : 32; }

struct PackedWeight {
  QType type = QType::Q4;
  int N = 0, K = 0;        // logical sizes
  int Np = 0, Kp = 0;      // padded sizes
  int group = 0;           // = Kp for per-channel
  std::vector<uint8_t> data;
  std::vector<float> scales;  // [N, Kp/group], as stored on disk
  // Derived by finalize_packed() for the kernels, which read 16 channels of one group at once:
  std::vector<float> scales_gn;     // [G, Np]: scales transposed, zero past N
  std::vector<int32_t> offsets_gn;  // [G, Np]: Q8 only, 128 * sum_{k in g} w[n, k] (the u8 trick)
  int groups() const { return Kp / group; }
  size_t bytes() const { return data.size() + scales.size() * 4; }  // what is stored
};

// Fills scales_gn / offsets_gn from scales and data (pack_weights_ref and the loader call it).
void finalize_packed(PackedWeight& p);


// Integer weights (row-major [N, K], values in range for the type) + scales [N, G] -> packed,
// one step at a time through the type's table row (kernels/wtype.h). Refuses a type that is
// not packed and a code outside [qmin, qmax].
PackedWeight pack_weights_ref(QType t, const int8_t* q, int N, int K, int group, const float* scales);
// Inverse of the packing (for tests and export): q [N, K].
void unpack_weights_ref(const PackedWeight& p, int8_t* q);

// Symmetric per-token activation codes: q = clamp(round(x / s)), s = clip * absmax / qmax.
// bits 8 -> [-128, 127] codes, bits 4 -> [-8, 7]. K is padded with zeros to Kp.
struct QuantizedActs {
  int M = 0, K = 0, Kp = 0, bits = 8;
  std::vector<int8_t> q;       // [M, Kp]
  std::vector<float> scale;    // [M]
  std::vector<int32_t> gsum;   // [M, Kp/group]: sum of codes per weight group (Q4 correction)
};
void quantize_acts_ref(const float* x, int M, int K, int Kp, int bits, float clip, int group, QuantizedActs* out);
// The arithmetic every activation quantizer shares with fake_quant_ref (quant/quantizer.cc):
// scale = clip * absmax / qmax (1 for an all-zero row); code = clamp(nearbyint(x / scale)), NaN -> 0.
inline float act_scale(float amax, float clip, int qmax) { return amax * clip > 0 ? amax * clip / qmax : 1.0f; }
inline int8_t act_code(float x, float s, int qmin, int qmax) {
  const float v = __builtin_nearbyintf(x / s);
  return (int8_t)(v != v ? 0.0f : std::min<float>(std::max<float>(v, qmin), qmax));  // casting NaN is UB
}
// The same codes, bit for bit, from the fastest implementation for `k` (AVX-512 for Vnni, AVX2
// for Avx2). When
// `pre` is given it is applied to a private copy of each row just before the row is quantized
// (the online Hadamard before down_proj): the rotated row never goes back to memory and x is
// left unchanged.
void quantize_acts(Kernel k, const float* x, int M, int K, int Kp, int bits, float clip, int group, QuantizedActs* out,
                   const RowTransform* pre = nullptr);

class TensorSource;
struct Tensor;
// Reads NAME.qweight (U8, the packed bytes), NAME.qscale (F32 [N, G]) and NAME.qbits (F32 [1])
// and validates every size against N, K and the type before use.
std::shared_ptr<const PackedWeight> load_packed_weight(const TensorSource& src, const std::string& name, int N, int K,
                                                       Tensor* qscale, int* qbits);
// Dequantized fp32 weights [N, K] (w = q * scale, WTypeTraits::dequantize) of a packed weight.
std::vector<float> dequantize_packed(const PackedWeight& p);
// Rows [n0, n1) of it into w [n1 - n0, K]; n0 a multiple of kTileN.
void dequantize_packed_rows(const PackedWeight& p, int n0, int n1, float* w);


// Integer accumulators: acc[m, n, g] = sum_{k in group g} xq[m,k] * w[n,k] (exact int32).
void gemm_acc(Kernel k, const QuantizedActs& a, const PackedWeight& w, int32_t* acc /* [M, Np, G] */);
// y[m, n] = s_x[m] * sum_g s_w[n, g] * acc[m, n, g] (+ bias[n]). The VNNI kernel applies this
// epilogue in registers; the others go through gemm_acc and gemm_epilogue_ref.
void gemm_epilogue_ref(const QuantizedActs& a, const PackedWeight& w, const int32_t* acc, const float* bias, float* y);
void gemm_q(Kernel k, const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y /* [M, N] */);

// AMX: the CPU has AMX-TILE and AMX-INT8 and the OS granted this process the tile state.
bool amx_usable();
inline constexpr int kAmxMinRows = 16;
// The tile GEMM takes Q4 or Q8 weights, M >= kAmxMinRows and K tiles of 64 that do not straddle
// weight groups.
bool amx_fits(const QuantizedActs& a, const PackedWeight& w);

}  // namespace kt
