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

enum class DType { F32, F16, BF16, F64, I32, I64, I8, U8 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);

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
};

// Converts a stored tensor to fp32 (F32/F16/BF16/F64 accepted).
Tensor to_f32(const TensorInfo& ti);

// A set of named tensors that can be materialised one at a time (so a model larger
// than RAM in fp32 can be processed layer by layer).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool has(const std::string& name) const = 0;
  virtual const TensorInfo& info(const std::string& name) const = 0;  // throws if absent
  virtual std::vector<std::string> names() const = 0;
  virtual std::string describe() const = 0;  // path, for error messages
  Tensor load(const std::string& name) const { return to_f32(info(name)); }
};

}  // namespace kt
