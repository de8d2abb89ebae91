// Weight types as values (after ggml's type_traits): one table row per way a linear's weights
// can be stored, with everything that depends on the type (bits, code range, packed step size,
// step pack/unpack). Code elsewhere asks the table instead of writing `bits == 4 ? ... : ...`.
// Packed byte layouts are described in kernels/packed.h; this header stays light (no vectors).
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace kt {

struct QuantSpec;

// F32: plain (or fake-quantized) fp32 weights, not packed. Q4 / Q6 / Q8: symmetric integer
// codes with fp32 scales per output channel or per group, packed for the integer GEMM. New
// formats are new rows (and kernels), never new ternaries.
enum class WType : uint8_t { F32, Q4, Q6, Q8 };
constexpr int kWTypeCount = 4;

// Packed formats share one tiling: output channels in tiles of kTileN, K in steps of kStepK.
// A "step" is one tile x one K step; a group size must be a multiple of kStepK.
constexpr int kTileN = 16, kStepK = 8;

struct WTypeTraits {
  WType type;
  const char* name;   // for messages: "f32", "int4", "int6", "int8"
  int bits;           // bits per weight; for integer types the value stored in NAME.qbits
  int qmin, qmax;     // code range (symmetric two's complement); 0, 0 for F32
  size_t step_bytes;  // bytes of one packed kTileN x kStepK step; 0: the type is not packed
  // One step: codes[c * kStepK + j] is the code of channel c (0..kTileN-1) at K offset j.
  // pack_step assumes every code is in [qmin, qmax] (pack_weights_ref checks).
  void (*pack_step)(const int8_t* codes, uint8_t* step);
  void (*unpack_step)(const uint8_t* step, int8_t* codes);

  bool packed() const { return step_bytes != 0; }
  // Bytes of the packed codes of an [n, k] weight: N padded to kTileN, K to kStepK (the size
  // NAME.qweight must have on disk).
  size_t packed_bytes(int64_t n, int64_t k) const {
    return (size_t)((n + kTileN - 1) / kTileN) * (size_t)((k + kStepK - 1) / kStepK) * step_bytes;
  }
  // The fp32 value of a code (symmetric: no zero point).
  float dequantize(int code, float scale) const { return (float)code * scale; }
};

// Indexed by (int)WType.
extern const WTypeTraits kWTypeTraits[kWTypeCount];
inline const WTypeTraits& wtype_traits(WType t) { return kWTypeTraits[(int)t]; }

// The packed integer type whose NAME.qbits is `bits` (4 -> Q4, 6 -> Q6, 8 -> Q8); none for anything else
// (including non-integers and NaN: the value comes from a file).
std::optional<WType> wtype_for_bits(double bits);
// "4, 6 or 8": the bits of every packed type, for messages.
std::string packed_wtype_bits_list();

// The integer type of weights quantized by `w`, or none when their codes cannot be stored as a
// packed type: not quantized, asymmetric (a zero point), per-tensor, or bits without a table
// row. This is the one "records integer-grid scales / is packable" predicate (quant/gptq.cc
// records scales exactly for these specs; quant/validate_model.cc expects them). Whether one
// linear packs also needs its group size to be a multiple of kStepK (model/pack_linear.h).
std::optional<WType> wtype_for(const QuantSpec& w);

// The code of fp32 weight `w` on the grid of `scale` for type `t`: true when w / scale is within
// 1e-3 of an integer in [qmin, qmax]. A zero scale (an all-zero group) fits only w == 0. NaN
// fails.
inline bool grid_code(const WTypeTraits& t, float w, float scale, int8_t* code) {
  const float v = scale != 0 ? w / scale : (w == 0 ? 0.0f : __builtin_nanf(""));
  const float rv = __builtin_nearbyintf(v);
  if (!(__builtin_fabsf(v - rv) <= 1e-3f) || rv < t.qmin || rv > t.qmax) return false;  // NaN fails too
  *code = (int8_t)rv;
  return true;
}

}  // namespace kt
