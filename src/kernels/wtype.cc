#include "kernels/wtype.h"

#include <cstring>

#include "core/quantizer.h"
#include "kernels/packed.h"

namespace kt {

namespace {

// Q4: byte 4c+j holds channel c's code at j in the low nibble and at 4+j in the high nibble,
// each stored as u = code + 8 (packed.h, Q4Step).
void pack_step_q4(const int8_t* codes, uint8_t* step) {
  Q4Step s{};
  for (int c = 0; c < kTileN; c++)
    for (int j = 0; j < 4; j++)
      s.u[c][j] = (uint8_t)((codes[c * kStepK + j] + 8) | ((codes[c * kStepK + 4 + j] + 8) << 4));
  std::memcpy(step, &s, sizeof s);
}
void unpack_step_q4(const uint8_t* step, int8_t* codes) {
  Q4Step s;
  std::memcpy(&s, step, sizeof s);
  for (int c = 0; c < kTileN; c++)
    for (int j = 0; j < 4; j++) {
      codes[c * kStepK + j] = (int8_t)((s.u[c][j] & 15) - 8);
      codes[c * kStepK + 4 + j] = (int8_t)((s.u[c][j] >> 4) - 8);
    }
}

// Q6: a Q4 step of the low nibbles of u = code + 32, then the 2-bit high parts (packed.h, Q6Step).
void pack_step_q6(const int8_t* codes, uint8_t* step) {
  Q6Step s{};
  auto u = [&](int b, int half) {  // lo byte b (= 4c + j): its low (half 0) or high (half 1) nibble's weight
    return codes[(b / 4) * kStepK + 4 * half + b % 4] + 32;
  };
  for (int b = 0; b < 64; b++) s.lo[b / 4][b % 4] = (uint8_t)((u(b, 0) & 15) | ((u(b, 1) & 15) << 4));
  for (int i = 0; i < 32; i++)
    s.hi[i] = (uint8_t)((u(i, 0) >> 4) | ((u(i + 32, 0) >> 4) << 2) | ((u(i, 1) >> 4) << 4) | ((u(i + 32, 1) >> 4) << 6));
  std::memcpy(step, &s, sizeof s);
}
void unpack_step_q6(const uint8_t* step, int8_t* codes) {
  Q6Step s;
  std::memcpy(&s, step, sizeof s);
  for (int b = 0; b < 64; b++) {
    const int c = b / 4, j = b % 4, i = b % 32, sh = b < 32 ? 0 : 2;
    const uint8_t l = s.lo[c][j];
    codes[c * kStepK + j] = (int8_t)(((l & 15) | (((s.hi[i] >> sh) & 3) << 4)) - 32);
    codes[c * kStepK + 4 + j] = (int8_t)(((l >> 4) | (((s.hi[i] >> (4 + sh)) & 3) << 4)) - 32);
  }
}

// Q8: two 64-byte halves, K offsets 0..3 then 4..7, as signed bytes (packed.h, Q8Step).
void pack_step_q8(const int8_t* codes, uint8_t* step) {
  Q8Step s{};
  for (int c = 0; c < kTileN; c++)
    for (int j = 0; j < 4; j++) {
      s.lo[c][j] = codes[c * kStepK + j];
      s.hi[c][j] = codes[c * kStepK + 4 + j];
    }
  std::memcpy(step, &s, sizeof s);
}
void unpack_step_q8(const uint8_t* step, int8_t* codes) {
  Q8Step s;
  std::memcpy(&s, step, sizeof s);
  for (int c = 0; c < kTileN; c++)
    for (int j = 0; j < 4; j++) {
      codes[c * kStepK + j] = s.lo[c][j];
      codes[c * kStepK + 4 + j] = s.hi[c][j];
    }
}

static_assert(kTileN == 16 && kStepK == 8, "Q4Step / Q6Step / Q8Step are 16 channels x 8 K");

}  // namespace

const WTypeTraits kWTypeTraits[kWTypeCount] = {
    {WType::F32, "f32", 32, 0, 0, 0, nullptr, nullptr},
    {WType::Q4, "int4", 4, -8, 7, sizeof(Q4Step), &pack_step_q4, &unpack_step_q4},
    {WType::Q6, "int6", 6, -32, 31, sizeof(Q6Step), &pack_step_q6, &unpack_step_q6},
    {WType::Q8, "int8", 8, -128, 127, sizeof(Q8Step), &pack_step_q8, &unpack_step_q8},
};

std::optional<WType> wtype_for_bits(double bits) {
  for (const WTypeTraits& t : kWTypeTraits)
    if (t.packed() && bits == t.bits) return t.type;
  return std::nullopt;
}

std::string packed_wtype_bits_list() {
  std::string s;
  for (const WTypeTraits& t : kWTypeTraits)
    if (t.packed()) s += (s.empty() ? "" : ", ") + std::to_string(t.bits);
  const size_t last = s.rfind(", ");
  return last == std::string::npos ? s : s.replace(last, 2, " or ");
}

std::optional<WType> wtype_for(const QuantSpec& w) {
  if (!w.enabled() || !w.symmetric || w.gran == Granularity::PerTensor) return std::nullopt;
  return wtype_for_bits(w.bits);
}

}  // namespace kt
