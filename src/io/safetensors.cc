#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>

#include "io/json_checked.h"
#include "util/error.h"
#include "util/output.h"

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

// The header is read with a SAX handler straight into TensorInfo entries: no JSON tree is
// built, so memory is bounded by the tensors the header actually declares (a DOM of a 97 MB
// header of tiny values took 1.7 GB), nesting cannot go past the format's three levels, and
// a duplicate tensor name or key is refused (the format has no way to say which one counts).
class HeaderSax : public nlohmann::json_sax<json> {
 public:
  HeaderSax(const std::string& path, const uint8_t* base, size_t data_size, std::map<std::string, TensorInfo>* tensors,
            std::map<std::string, std::string>* metadata)
      : path_(path), base_(base), data_size_(data_size), tensors_(tensors), metadata_(metadata) {}

  bool null() override {
    if (depth_ == 1 && name_ == "__metadata__") return true;  // "__metadata__": null is "none" (as the reference reads it)
    return scalar("null");
  }
  bool boolean(bool) override { return scalar("boolean"); }
  bool number_integer(number_integer_t v) override {
    if (in_array()) fail(path_, "tensor " + quote(name_) + (field_ == "shape" ? " has a negative or non-integer dimension" : " has malformed data_offsets"));
    return scalar("number");
  }
  bool number_unsigned(number_unsigned_t v) override {
    if (!in_array()) return scalar("number");
    if (field_ == "shape") {
      if (shape_.size() >= 8) fail(path_, "tensor " + quote(name_) + " has a bad shape");
      shape_.push_back(v);
    } else {
      if (offsets_.size() >= 2) fail(path_, "tensor " + quote(name_) + " has malformed data_offsets");
      offsets_.push_back(v);
    }
    return true;
  }
  bool number_float(number_float_t, const string_t&) override {
    if (in_array()) fail(path_, "tensor " + quote(name_) + (field_ == "shape" ? " has a negative or non-integer dimension" : " has malformed data_offsets"));
    return scalar("number");
  }
  bool string(string_t& v) override {
    if (depth_ == 2 && in_metadata_) {
      (*metadata_)[key_] = v;
      return true;
    }
    if (depth_ == 2 && field_ == "dtype") {
      if (!parse_dtype(v, &dtype_)) fail(path_, "tensor " + quote(name_) + " has unknown dtype \"" + printable(v, 40) + "\"");
      have_dtype_ = true;
      return true;
    }
    return scalar("string");
  }
  bool binary(binary_t&) override { return scalar("binary"); }
  bool start_object(std::size_t) override {
    if (depth_ == 0) {
      depth_ = 1;
      return true;
    }
    if (depth_ == 1) {
      depth_ = 2;
      in_metadata_ = name_ == "__metadata__";
      entry_keys_.clear();
      shape_.clear();
      offsets_.clear();
      have_dtype_ = have_shape_ = have_offsets_ = false;
      return true;
    }
    return scalar("object");
  }
  bool key(string_t& k) override {
    if (depth_ == 1) {
      if (tensors_->count(k) || (k == "__metadata__" && seen_metadata_)) fail(path_, "duplicate tensor name " + quote(k) + " in the header");
      seen_metadata_ = seen_metadata_ || k == "__metadata__";
      name_ = k;
      return true;
    }
    // depth 2: a tensor entry's field or a metadata key
    if (!entry_keys_.insert(k).second) fail(path_, "duplicate key " + quote(k) + " in the entry of " + quote(name_));
    if (in_metadata_) {
      key_ = k;
      return true;
    }
    if (k != "dtype" && k != "shape" && k != "data_offsets")
      fail(path_, "tensor " + quote(name_) + " has an unknown field " + quote(k));
    field_ = k;
    return true;
  }
  bool end_object() override {
    if (depth_ == 2) {
      if (!in_metadata_) finish_tensor();
      in_metadata_ = false;
      depth_ = 1;
      return true;
    }
    depth_ = 0;
    done_ = true;
    return true;
  }
  bool start_array(std::size_t) override {
    if (depth_ == 2 && !in_metadata_ && (field_ == "shape" || field_ == "data_offsets")) {
      depth_ = 3;
      (field_ == "shape" ? have_shape_ : have_offsets_) = true;
      return true;
    }
    return scalar("array");
  }
  bool end_array() override {
    depth_ = 2;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    fail(path_, std::string("safetensors header is not valid JSON: ") + ex.what());
  }
  bool done() const { return done_; }

 private:
  bool in_array() const { return depth_ == 3; }
  // A value where the format has none of this type.
  bool scalar(const char* type) {
    if (depth_ == 0) fail(path_, "safetensors header is not a JSON object");
    if (depth_ == 1) fail(path_, "tensor " + quote(name_) + " entry lacks dtype/shape/data_offsets");
    if (in_metadata_) fail(path_, "__metadata__ value of " + quote(key_) + " is a " + type + ", not a string");
    if (field_ == "data_offsets") fail(path_, "tensor " + quote(name_) + " has malformed data_offsets");
    if (field_ == "shape") fail(path_, "tensor " + quote(name_) + " has a bad shape");
    fail(path_, "tensor " + quote(name_) + " has unknown dtype (a " + type + ")");
  }

  void finish_tensor() {
    const std::string& name = name_;
    if (!have_dtype_ || !have_shape_ || !have_offsets_)
      fail(path_, "tensor " + quote(name) + " entry lacks dtype/shape/data_offsets");
    TensorInfo ti;
    ti.name = name;
    ti.file = path_;
    ti.dtype = dtype_;
    size_t numel = 1;
    for (uint64_t dv : shape_) {
      if (dv > (uint64_t)std::numeric_limits<int64_t>::max()) fail(path_, "tensor " + quote(name) + " shape overflows");
      if (dv != 0 && numel > std::numeric_limits<size_t>::max() / dv / 8)
        fail(path_, "tensor " + quote(name) + " shape overflows");
      numel *= dv;
      ti.shape.push_back((int64_t)dv);
    }
    if (offsets_.size() != 2) fail(path_, "tensor " + quote(name) + " has malformed data_offsets");
    const uint64_t b = offsets_[0], e = offsets_[1];
    if (b > e || e > data_size_)
      fail(path_, "tensor " + quote(name) + " data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                      ") out of range (data section is " + std::to_string(data_size_) + " bytes)");
    if (e - b != numel * dtype_size(ti.dtype))
      fail(path_, "tensor " + quote(name) + " has " + std::to_string(e - b) + " bytes but its shape and dtype need " +
                      std::to_string(numel * dtype_size(ti.dtype)));
    ti.data = base_ + b;
    ti.mapped = true;
    ti.nbytes = e - b;
    if (e > b) ranges.emplace_back(b, e);
    (*tensors_)[name] = std::move(ti);
  }

 public:
  std::vector<std::pair<size_t, size_t>> ranges;

 private:
  const std::string& path_;
  const uint8_t* base_;
  size_t data_size_;
  std::map<std::string, TensorInfo>* tensors_;
  std::map<std::string, std::string>* metadata_;
  int depth_ = 0;  // 0 outside, 1 in the header object, 2 in an entry, 3 in shape/data_offsets
  bool done_ = false, in_metadata_ = false, seen_metadata_ = false;
  std::string name_, key_, field_;
  std::set<std::string> entry_keys_;
  DType dtype_ = DType::F32;
  bool have_dtype_ = false, have_shape_ = false, have_offsets_ = false;
  std::vector<uint64_t> shape_, offsets_;
};

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
  const char* h = (const char*)file_.data() + 8;
  HeaderSax sax(path, file_.data() + 8 + hlen, fsize - 8 - hlen, &tensors_, &metadata_);
  json::sax_parse(h, h + hlen, &sax);
  if (!sax.done()) fail(path, "safetensors header is not a JSON object");
  std::sort(sax.ranges.begin(), sax.ranges.end());
  for (size_t i = 1; i < sax.ranges.size(); i++)
    if (sax.ranges[i].first < sax.ranges[i - 1].second) fail(path, "tensor data ranges overlap");
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
    // A tensor stored in two shards is ambiguous (loaders that read every shard disagree with
    // the index): refuse it.
    std::map<std::string, std::string> seen;
    for (auto& [f, si] : shard_idx)
      for (const std::string& n : shards_[si]->names())
        if (auto [it, fresh] = seen.emplace(n, f); !fresh)
          fail(index, "tensor " + quote(n) + " is stored in two shards (" + quote(it->second) + " and " + quote(f) + ")");
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

namespace {

// The 8-byte header length and the JSON header, padded with spaces to a multiple of 8 bytes
// (what the safetensors reference writer does), with room reserved for `payload` bytes of data.
std::string file_prefix(const json& h, size_t payload) {
  std::string hs = h.dump();
  while ((hs.size() + 8) % 8) hs.push_back(' ');
  std::string out;
  out.reserve(8 + hs.size() + payload);
  uint64_t hl = hs.size();
  out.append(reinterpret_cast<const char*>(&hl), 8);
  out += hs;
  return out;
}

}  // namespace

namespace {
// n fp32 values stored as `dtype`: F32 as they are, F16/BF16 (round to nearest even) or U8
// (values 0..255) converted a chunk at a time in buf.
void put_values(const ChunkSink& put, DType dtype, const float* v, size_t n, std::vector<uint8_t>& buf) {
  if (dtype == DType::F32) {
    put(v, n * 4);
    return;
  }
  constexpr size_t kChunk = 1 << 16;  // elements converted at a time
  for (size_t i0 = 0; i0 < n; i0 += kChunk) {
    const size_t m = std::min(kChunk, n - i0);
    if (dtype == DType::U8) {
      buf.resize(m);
      for (size_t i = 0; i < m; i++) buf[i] = (uint8_t)v[i0 + i];
    } else {
      buf.resize(m * 2);
      for (size_t i = 0; i < m; i++) {
        const uint16_t x = dtype == DType::F16 ? f32_to_f16(v[i0 + i]) : f32_to_bf16(v[i0 + i]);
        std::memcpy(buf.data() + 2 * i, &x, 2);
      }
    }
    put(buf.data(), buf.size());
  }
}
}  // namespace

void write_safetensors(const std::string& path, const std::vector<SafetensorsOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t off = 0;
  for (const SafetensorsOut& t : tensors) {
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16 && t.dtype != DType::U8)
      fail(path, "internal: tensor " + quote(t.name) + " cannot be written as " + dtype_name(t.dtype));
    const bool made = (t.produce || (t.produce_bytes && t.dtype == DType::U8)) && t.piece > 0;
    if (Tensor::numel_of(t.shape) > 0 && !t.values && !(t.bytes && t.dtype == DType::U8) && !made)
      fail(path, "internal: tensor " + quote(t.name) + " has no data");
    const size_t nb = dtype_nbytes(t.dtype, (size_t)Tensor::numel_of(t.shape));
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + nb}}};
    off += nb;
  }
  const std::string prefix = file_prefix(h, 0);
  write_file_atomic(path, [&](const ChunkSink& put) {
    put(prefix.data(), prefix.size());
    std::vector<uint8_t> buf;
    std::vector<float> piece;
    for (const SafetensorsOut& t : tensors) {
      const size_t n = (size_t)Tensor::numel_of(t.shape);
      if (t.bytes && t.dtype == DType::U8) {
        put(t.bytes, n);
      } else if (t.values) {
        put_values(put, t.dtype, t.values, n, buf);
      } else if (t.produce_bytes && t.dtype == DType::U8) {
        for (size_t i0 = 0; i0 < n; i0 += t.piece) {
          buf.resize(std::min(t.piece, n - i0));
          t.produce_bytes(i0, buf.size(), buf.data());
          put(buf.data(), buf.size());
        }
      } else {  // produced values, each piece stored as held values would be
        for (size_t i0 = 0; i0 < n; i0 += t.piece) {
          piece.resize(std::min(t.piece, n - i0));
          t.produce(i0, piece.size(), piece.data());
          put_values(put, t.dtype, piece.data(), piece.size(), buf);
        }
      }
    }
  });
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor*>>& tensors,
                       const std::map<std::string, std::string>& metadata, const std::set<std::string>& as_u8,
                       const std::set<std::string>& as_f16, const std::set<std::string>& as_bf16) {
  std::vector<SafetensorsOut> out;
  for (auto& [name, t] : tensors) {
    const DType d = as_u8.count(name) ? DType::U8 : as_f16.count(name) ? DType::F16 : as_bf16.count(name) ? DType::BF16 : DType::F32;
    out.push_back({name, t->shape, d, t->data.data(), nullptr});
  }
  write_safetensors(path, out, metadata);
}

void write_safetensors_raw(const std::string& path, const std::vector<RawTensor>& tensors,
                           const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t off = 0;
  for (const RawTensor& t : tensors) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    if (t.bytes.size() != dtype_nbytes(t.dtype, (size_t)numel))
      fail(path, "internal: tensor " + quote(t.name) + " has " + std::to_string(t.bytes.size()) + " bytes for shape " +
                     shape_str(t.shape));
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
    off += t.bytes.size();
  }
  std::string out = file_prefix(h, off);
  for (const RawTensor& t : tensors) out += t.bytes;
  write_file_atomic(path, out);
}

}  // namespace kt
