// safetensors reader (single file or sharded via model.safetensors.index.json) and writer.
#pragma once
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "util/file.h"

namespace kt {

// One mmapped .safetensors file. The header is parsed once; every dtype, shape and
// offset is checked against the file size before any tensor is touched.
class SafetensorsFile : public TensorSource {
 public:
  explicit SafetensorsFile(const std::string& path);
  bool has(const std::string& name) const override { return tensors_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return file_.path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  MappedFile file_;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: model.safetensors, or shards listed in model.safetensors.index.json.
class SafetensorsDir : public TensorSource {
 public:
  explicit SafetensorsDir(const std::string& dir);
  bool has(const std::string& name) const override { return where_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return dir_; }
  // The files it reads: model.safetensors, or each shard the index names.
  std::vector<const SafetensorsFile*> files() const {
    std::vector<const SafetensorsFile*> v;
    for (const auto& f : shards_) v.push_back(f.get());
    return v;
  }

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, size_t> where_;
};

// One tensor to write, streamed from the caller's memory: fp32 `values` stored as `dtype` (F32,
// F16 or BF16 rounded to nearest even, or U8 for values 0..255), or `bytes` already U8.
struct SafetensorsOut {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  const float* values = nullptr;
  const uint8_t* bytes = nullptr;
  // Or made a piece at a time (a tensor too large to hold whole: a streamed model's embedding
  // and head): fills elements [first, first + n) with fp32 values (produce; stored as `dtype`) or
  // with U8 bytes (produce_bytes), asked for in order in pieces of `piece` elements (the last
  // may be shorter).
  std::function<void(size_t first, size_t n, float* dst)> produce;
  std::function<void(size_t first, size_t n, uint8_t* dst)> produce_bytes;
  size_t piece = 0;
};
// Writes them in order, atomically, converting in small chunks: memory stays what the caller holds
// (no image of the file is built).
void write_safetensors(const std::string& path, const std::vector<SafetensorsOut>& tensors,
                       const std::map<std::string, std::string>& metadata);

// Writes tensors (name -> tensor) plus string metadata atomically: F32, except the names in
// `as_u8`, whose values (0..255) are stored as U8 bytes, and those in `as_f16` (F16) or
// `as_bf16` (BF16, round to nearest even).
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                       const std::map<std::string, std::string>& metadata = {},
                       const std::set<std::string>& as_u8 = {}, const std::set<std::string>& as_f16 = {},
                       const std::set<std::string>& as_bf16 = {});

// One tensor already in its stored form (the bytes of `dtype` elements, little-endian), for
// writers of other tools' layouts (compressed-tensors: I32 packed weights, I64 shapes, F16/BF16).
struct RawTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
// Writes them in order, atomically; fails if a tensor's byte count does not match its shape.
void write_safetensors_raw(const std::string& path, const std::vector<RawTensor>& tensors,
                           const std::map<std::string, std::string>& metadata = {});

}  // namespace kt
