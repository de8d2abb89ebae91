// A TensorSource over tensors held in memory (llama2.c checkpoints, generated test models).
#pragma once
#include <map>

#include "core/tensor.h"

namespace kt {

class MemorySource : public TensorSource {
 public:
  explicit MemorySource(std::string desc) : desc_(std::move(desc)) {}
  void add(const std::string& name, Tensor t);
  bool has(const std::string& name) const override { return infos_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return desc_; }

 private:
  std::string desc_;
  std::map<std::string, std::unique_ptr<Tensor>> tensors_;
  std::map<std::string, TensorInfo> infos_;
};

}  // namespace kt
