#include "io/memory_source.h"

#include "util/error.h"

namespace kt {

void MemorySource::add(const std::string& name, Tensor t) {
  auto p = std::make_unique<Tensor>(std::move(t));
  TensorInfo ti;
  ti.name = name;
  ti.dtype = DType::F32;
  ti.shape = p->shape;
  ti.data = reinterpret_cast<const uint8_t*>(p->data.data());
  ti.nbytes = p->data.size() * 4;
  ti.file = desc_;
  tensors_[name] = std::move(p);
  infos_[name] = ti;
}

const TensorInfo& MemorySource::info(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end()) fail(desc_, "missing tensor " + quote(name));
  return it->second;
}

std::vector<std::string> MemorySource::names() const {
  std::vector<std::string> v;
  for (auto& [k, _] : infos_) v.push_back(k);
  return v;
}

}  // namespace kt
