// Dense fp32 tensors and the interface every checkpoint reader implements.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kt {

// A row-major fp32 tensor. Weights of a linear layer are [out, in] as in PyTorch.
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> s) : shape(std::move(s)), data(numel_of(shape), 0.0f) {}
  static Tensor from(const std::vector<float>& v) {
    Tensor t;
    t.shape = {(int64_t)v.size()};
    t.data = v;
    return t;
  }
  int64_t numel() const { return (int64_t)data.size(); }
  int64_t dim(int i) const { return shape.at(i); }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
  bool empty() const { return data.empty(); }
  static size_t numel_of(const std::vector<int64_t>& s) {
    size_t n = 1;
    for (auto d : s) n *= (size_t)d;
    return n;
  }
};

// Q8_0: ggml's block of 32 int8 values with one fp16 scale (34 bytes), from GGUF files.
enum class DType { F32, F16, BF16, F64, I32, I64, I8, U8, Q8_0 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);  // bytes per element; 0 for block types (Q8_0)
// Bytes that `numel` elements take; 0 if numel does not fill whole blocks.
size_t dtype_nbytes(DType t, size_t numel);

struct BlockQ8_0 {
  uint16_t d;       // fp16 scale
  int8_t qs[32];    // value = d * qs[i]
};
static_assert(sizeof(BlockQ8_0) == 34, "ggml block_q8_0 is 34 bytes");
// ggml's reference Q8_0 quantizer: d = absmax/127 (stored fp16), q = round(x / d). n % 32 == 0.
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, size_t n);

// fp16 / bf16 <-> fp32 conversion (bit exact, round-to-nearest-even on the way down).
float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);

// Metadata of one stored tensor, pointing into a mapped file.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // validated: [data, data+nbytes) lies inside the file
  size_t nbytes = 0;
  std::string file;
  // GGUF q_proj/k_proj: llama.cpp's converter permutes the rows of each head for its RoPE
  // (pairs (i, i+d/2) -> (2i, 2i+1)); with n heads here, to_f32 undoes it (HF layout).
  int unpermute_heads = 0;
  // data lies in a read-only file mapping (safetensors, GGUF): its pages can be dropped from this
  // process once the tensor has been converted (release_mapped_pages), and refault from the file.
  bool mapped = false;
};

// Drops the whole pages of a mapped tensor's bytes from this process (madvise MADV_DONTNEED on a
// read-only file mapping: the page cache keeps them, the process's RSS no longer counts them).
// No-op for tensors in ordinary memory. Streaming loads call it so that a model read layer by
// layer does not end up with the whole checkpoint counted resident.
void release_mapped_pages(const TensorInfo& ti);

// llama.cpp's q/k row order for its RoPE: within each of `heads` heads of d rows, HF row
// j*(d/2)+i is stored at 2i+j. to_gguf = true applies that permutation, false undoes it.
// src and dst are [rows, cols] and must not overlap.
void permute_qk_rows(const float* src, float* dst, int64_t rows, int64_t cols, int heads, bool to_gguf);

// Converts a stored tensor to fp32 (F32/F16/BF16/F64/Q8_0 accepted).
Tensor to_f32(const TensorInfo& ti);
// Rows [row0, row0 + n) of a stored matrix in fp32 into dst (n x cols), without converting the
// rest: an embedding of 128k rows is read a block at a time. Only for a tensor readable_by_rows:
// a matrix of whole-block rows in a dtype to_f32 takes, whose bytes match its shape, stored in
// the order it is used (not a GGUF q/k that to_f32 unpermutes); to_f32_rows fails on another.
bool readable_by_rows(const TensorInfo& ti);
void to_f32_rows(const TensorInfo& ti, int64_t row0, int64_t n, float* dst);
// release_mapped_pages for rows [row0, row0 + n) of a mapped matrix.
void release_mapped_rows(const TensorInfo& ti, int64_t row0, int64_t n);

// A set of named tensors that can be materialised one at a time (so a model larger
// than RAM in fp32 can be processed layer by layer).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool has(const std::string& name) const = 0;
  virtual const TensorInfo& info(const std::string& name) const = 0;  // throws if absent
  virtual std::vector<std::string> names() const = 0;
  virtual std::string describe() const = 0;  // path, for error messages
  // The family's RMSNorm weights are stored as the multiplier (GGUF: llama.cpp's converter adds
  // Gemma's 1), not in the HF form multiplier - ModelSpec::norm_offset.
  virtual bool norms_stored_as_multipliers() const { return false; }
  Tensor load(const std::string& name) const { return to_f32(info(name)); }
};

// "[a, b, c]" for messages.
std::string shape_str(const std::vector<int64_t>& s);
// Fails naming FILE and tensor NAME at the first NaN or Inf.
void check_finite(const Tensor& t, const std::string& file, const std::string& name);

}  // namespace kt
