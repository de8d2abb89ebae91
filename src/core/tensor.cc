#include "core/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include <sys/mman.h>
#include <unistd.h>

#include "util/error.h"

namespace kt {

namespace {
// only the pages wholly inside [p, p + n): a neighbour sharing an edge page may still be in use
void release_mapped_bytes(const uint8_t* p, size_t n) {
  const uintptr_t page = (uintptr_t)::sysconf(_SC_PAGESIZE);
  const uintptr_t lo = ((uintptr_t)p + page - 1) / page * page;
  const uintptr_t hi = ((uintptr_t)p + n) / page * page;
  if (hi > lo) (void)::madvise((void*)lo, hi - lo, MADV_DONTNEED);  // advisory: a failure only costs RSS
}
}  // namespace

void release_mapped_pages(const TensorInfo& ti) {
  if (!ti.mapped || !ti.data || ti.nbytes == 0) return;
  release_mapped_bytes(ti.data, ti.nbytes);
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    case DType::Q8_0: return "Q8_0";
  }
  return "?";
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::F64: case DType::I64: return 8;
    case DType::I8: case DType::U8: return 1;
    case DType::Q8_0: return 0;
  }
  return 0;
}

size_t dtype_nbytes(DType t, size_t numel) {
  if (t == DType::Q8_0) return numel % 32 ? 0 : numel / 32 * sizeof(BlockQ8_0);
  return numel * dtype_size(t);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do { e++; man <<= 1; } while (!(man & 0x400));
      bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_f32(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40);  // NaN stays NaN
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = (int32_t)((x >> 23) & 0xff);
  uint32_t man = x & 0x7fffff;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
  int32_t e = exp - 127 + 15;
  if (e >= 31) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    man |= 0x800000;
    int shift = 14 - e;
    uint32_t half = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = sign | ((uint32_t)e << 10) | (man >> 13);
  uint32_t rem = man & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
  return (uint16_t)half;
}

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, size_t n) {
  for (size_t b = 0; b < n / 32; b++) {
    float amax = 0;
    for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    for (int i = 0; i < 32; i++) y[b].qs[i] = (int8_t)std::round(x[b * 32 + i] * id);
  }
}

namespace {

// Elements [first, first + n) of a stored tensor as fp32; first and n are whole blocks for a
// block type (Q8_0). The caller has checked the byte size against the shape.
void convert_f32(const TensorInfo& ti, size_t first, size_t n, float* out) {
  switch (ti.dtype) {
    case DType::F32:
      std::memcpy(out, ti.data + 4 * first, n * 4);
      break;
    case DType::F16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, ti.data + 2 * (first + i), 2);
        out[i] = f16_to_f32(h);
      }
      break;
    case DType::BF16:
      for (size_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, ti.data + 2 * (first + i), 2);
        out[i] = bf16_to_f32(h);
      }
      break;
    case DType::F64:
      for (size_t i = 0; i < n; i++) {
        double d;
        std::memcpy(&d, ti.data + 8 * (first + i), 8);
        // out of float range is UB to cast: make it Inf, which the loader then reports
        out[i] = std::fabs(d) <= 3.4028234663852886e38 || d != d ? (float)d : (d > 0 ? INFINITY : -INFINITY);
      }
      break;
    case DType::Q8_0:
      for (size_t b = 0; b < n / 32; b++) {
        BlockQ8_0 blk;
        std::memcpy(&blk, ti.data + (first / 32 + b) * sizeof blk, sizeof blk);
        const float d = f16_to_f32(blk.d);
        for (int i = 0; i < 32; i++) out[b * 32 + i] = d * (float)blk.qs[i];
      }
      break;
    default:
      fail(ti.file, "tensor " + quote(ti.name) + " has dtype " + dtype_name(ti.dtype) +
                        ", expected a floating-point type (F32/F16/BF16/Q8_0)");
  }
}

void check_nbytes(const TensorInfo& ti, size_t n) {
  if (dtype_nbytes(ti.dtype, n) != ti.nbytes || (n > 0 && ti.nbytes == 0))
    fail(ti.file, "tensor " + quote(ti.name) + " byte size does not match its shape");
}

}  // namespace

Tensor to_f32(const TensorInfo& ti) {
  Tensor t(ti.shape);
  size_t n = t.data.size();
  check_nbytes(ti, n);
  float* out = t.data.data();
  convert_f32(ti, 0, n, out);
  if (ti.unpermute_heads > 0) {
    const int64_t rows = ti.shape.empty() ? 0 : ti.shape[0], cols = rows ? (int64_t)n / rows : 0;
    const int64_t hd = rows / ti.unpermute_heads;
    if (rows % ti.unpermute_heads || hd % 2) fail(ti.file, "tensor " + quote(ti.name) + " rows do not split into heads");
    std::vector<float> src(t.data);
    permute_qk_rows(src.data(), out, rows, cols, ti.unpermute_heads, /*to_gguf=*/false);
  }
  return t;
}

bool readable_by_rows(const TensorInfo& ti) {
  if (ti.shape.size() != 2 || ti.shape[0] < 0 || ti.shape[1] < 0 || ti.unpermute_heads > 0) return false;
  switch (ti.dtype) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::F64: case DType::Q8_0: break;
    default: return false;
  }
  // whole blocks per row, and the bytes the shape implies
  const size_t n = Tensor::numel_of(ti.shape);
  return dtype_nbytes(ti.dtype, (size_t)ti.shape[1]) > 0 && dtype_nbytes(ti.dtype, n) == ti.nbytes && (n == 0 || ti.data);
}

void to_f32_rows(const TensorInfo& ti, int64_t row0, int64_t n, float* dst) {
  if (!readable_by_rows(ti)) fail(ti.file, "tensor " + quote(ti.name) + " cannot be read by rows");
  const int64_t rows = ti.shape[0], cols = ti.shape[1];
  if (row0 < 0 || n < 0 || row0 > rows || n > rows - row0)
    fail(ti.file, "internal: rows " + std::to_string(row0) + "+" + std::to_string(n) + " of tensor " + quote(ti.name) +
                      " with " + std::to_string(rows));
  convert_f32(ti, (size_t)(row0 * cols), (size_t)(n * cols), dst);
}

void release_mapped_rows(const TensorInfo& ti, int64_t row0, int64_t n) {
  if (!ti.mapped || !ti.data || ti.shape.size() != 2 || n <= 0) return;
  const size_t row_bytes = dtype_nbytes(ti.dtype, (size_t)ti.shape[1]);
  release_mapped_bytes(ti.data + (size_t)row0 * row_bytes, (size_t)n * row_bytes);
}

void permute_qk_rows(const float* src, float* dst, int64_t rows, int64_t cols, int heads, bool to_gguf) {
  const int64_t hd = rows / heads;
  for (int64_t h = 0; h < heads; h++)
    for (int64_t i = 0; i < hd / 2; i++)
      for (int64_t j = 0; j < 2; j++) {
        const int64_t hf = h * hd + j * (hd / 2) + i, gg = h * hd + 2 * i + j;
        std::memcpy(&dst[(to_gguf ? gg : hf) * cols], &src[(to_gguf ? hf : gg) * cols], cols * sizeof(float));
      }
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void check_finite(const Tensor& t, const std::string& file, const std::string& name) {
  for (size_t i = 0; i < t.data.size(); i++)
    if (!std::isfinite(t.data[i]))
      fail(file, "tensor " + quote(name) + " contains " + (std::isnan(t.data[i]) ? "NaN" : "Inf") + " at element " +
                     std::to_string(i));
}

}  // namespace kt
