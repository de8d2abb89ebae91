#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/json_checked.h"
#include "util/error.h"

namespace kt {

using json = nlohmann::json;

namespace {

bool parse_dtype(const std::string& s, DType* out) {
  static const std::map<std::string, DType> m = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64},
      {"I32", DType::I32}, {"I64", DType::I64}, {"I8", DType::I8},     {"U8", DType::U8}};
  auto it = m.find(s);
  if (it == m.end()) return false;
  *out = it->second;
  return true;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const size_t fsize = file_.size();
  if (fsize < 8) fail(path, "truncated safetensors file (smaller than the 8-byte header length)");
  uint64_t hlen;
  std::memcpy(&hlen, file_.data(), 8);
  if (hlen > fsize - 8)
    fail(path, "safetensors header length " + std::to_string(hlen) + " is larger than the file (" +
                   std::to_string(fsize) + " bytes)");
  if (hlen > (100u << 20)) fail(path, "safetensors header larger than 100 MiB");
  json h;
  h = parse_json(std::string_view((const char*)file_.data() + 8, hlen), path, SIZE_MAX,
                 "safetensors header is not valid JSON");
  if (!h.is_object()) fail(path, "safetensors header is not a JSON object");
  const uint8_t* base = file_.data() + 8 + hlen;
  const size_t data_size = fsize - 8 - hlen;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto& [name, v] : h.items()) {
    if (name == "__metadata__") {
      if (v.is_object())
        for (auto& [k, mv] : v.items())
          if (mv.is_string()) metadata_[k] = mv.get<std::string>();
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail(path, "tensor " + quote(name) + " entry lacks dtype/shape/data_offsets");
    TensorInfo ti;
    ti.name = name;
    ti.file = path;
    if (!v["dtype"].is_string() || !parse_dtype(v["dtype"].get<std::string>(), &ti.dtype))
      fail(path, "tensor " + quote(name) + " has unknown dtype " +
                       (v["dtype"].is_string() ? "\"" + printable(v["dtype"].get<std::string>(), 40) + "\""
                                               : std::string(json_type_name(v["dtype"]))));
    auto& sh = v["shape"];
    if (!sh.is_array() || sh.size() > 8) fail(path, "tensor " + quote(name) + " has a bad shape");
    size_t numel = 1;
    for (auto& d : sh) {
      if (!d.is_number_unsigned()) fail(path, "tensor " + quote(name) + " has a negative or non-integer dimension");
      uint64_t dv = d.get<uint64_t>();
      if (dv != 0 && numel > std::numeric_limits<size_t>::max() / dv / 8)
        fail(path, "tensor " + quote(name) + " shape overflows");
      numel *= dv;
      ti.shape.push_back((int64_t)dv);
    }
    auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(path, "tensor " + quote(name) + " has malformed data_offsets");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      fail(path, "tensor " + quote(name) + " data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                     ") out of range (data section is " + std::to_string(data_size) + " bytes)");
    if (e - b != numel * dtype_size(ti.dtype))
      fail(path, "tensor " + quote(name) + " has " + std::to_string(e - b) + " bytes but its shape and dtype need " +
                     std::to_string(numel * dtype_size(ti.dtype)));
    ti.data = base + b;
    ti.nbytes = e - b;
    if (e > b) ranges.emplace_back(b, e);
    tensors_[name] = std::move(ti);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); i++)
    if (ranges[i].first < ranges[i - 1].second) fail(path, "tensor data ranges overlap");
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(file_.path(), "missing tensor " + quote(name));
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> v;
  for (auto& [k, _] : tensors_) v.push_back(k);
  return v;
}

SafetensorsDir::SafetensorsDir(const std::string& dir) : dir_(dir) {
  std::string index = join_path(dir, "model.safetensors.index.json");
  std::string single = join_path(dir, "model.safetensors");
  if (file_exists(index)) {
    json j = parse_json(read_file(index), index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(index, "missing \"weight_map\" object");
    std::map<std::string, size_t> shard_idx;
    for (auto& [tname, fv] : j["weight_map"].items()) {
      if (!fv.is_string()) fail(index, "weight_map entry for " + quote(tname) + " is not a string");
      std::string f = fv.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        fail(index, "shard name " + quote(f) + " must be a plain file name");
      if (!shard_idx.count(f)) {
        shard_idx[f] = shards_.size();
        shards_.push_back(std::make_unique<SafetensorsFile>(join_path(dir, f)));
      }
      size_t si = shard_idx[f];
      if (!shards_[si]->has(tname)) fail(join_path(dir, f), "index lists tensor " + quote(tname) + " but the shard lacks it");
      where_[tname] = si;
    }
  } else if (file_exists(single)) {
    shards_.push_back(std::make_unique<SafetensorsFile>(single));
    for (auto& n : shards_[0]->names()) where_[n] = 0;
  } else {
    fail(dir, "no model.safetensors or model.safetensors.index.json found");
  }
}

const TensorInfo& SafetensorsDir::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) fail(dir_, "missing tensor " + quote(name));
  return shards_[it->second]->info(name);
}

std::vector<std::string> SafetensorsDir::names() const {
  std::vector<std::string> v;
  for (auto& [k, _] : where_) v.push_back(k);
  return v;
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                       const std::map<std::string, std::string>& metadata, const std::set<std::string>& as_u8,
                       const std::set<std::string>& as_f16) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t off = 0;
  for (auto& [name, t] : tensors) {
    const bool u8 = as_u8.count(name) > 0, f16 = as_f16.count(name) > 0;
    size_t nb = t->data.size() * (u8 ? 1 : f16 ? 2 : 4);
    h[name] = {{"dtype", u8 ? "U8" : f16 ? "F16" : "F32"}, {"shape", t->shape}, {"data_offsets", {off, off + nb}}};
    off += nb;
  }
  std::string hs = h.dump();
  while ((hs.size() + 8) % 8) hs.push_back(' ');
  std::string out;
  out.reserve(8 + hs.size() + off);
  uint64_t hl = hs.size();
  out.append(reinterpret_cast<const char*>(&hl), 8);
  out += hs;
  for (auto& [name, t] : tensors) {
    if (as_u8.count(name)) {
      for (float v : t->data) out.push_back((char)(uint8_t)v);
    } else if (as_f16.count(name)) {
      for (float v : t->data) {
        uint16_t h16 = f32_to_f16(v);
        out.append(reinterpret_cast<const char*>(&h16), 2);
      }
    } else
      out.append(reinterpret_cast<const char*>(t->data.data()), t->data.size() * 4);
  }
  write_file_atomic(path, out);
}

}  // namespace kt
