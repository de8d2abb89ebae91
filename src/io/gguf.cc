#include "io/gguf.h"

#include <algorithm>
#include <cstring>

#include "util/error.h"

namespace kt {

namespace {

// Bounds-checked little-endian cursor over the mapped file.
struct Cursor {
  const uint8_t* base;
  size_t size, pos = 0;
  const std::string& path;
  void need(size_t n) {
    if (n > size - pos) fail(path, "truncated GGUF file (needs " + std::to_string(n) + " bytes at offset " +
                                       std::to_string(pos) + ", file has " + std::to_string(size) + ")");
  }
  template <class T>
  T read() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, base + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string str() {
    uint64_t n = read<uint64_t>();
    if (n > (1u << 30)) fail(path, "GGUF string length " + std::to_string(n) + " is implausible");
    need(n);
    std::string s(reinterpret_cast<const char*>(base + pos), n);
    pos += n;
    return s;
  }
};

size_t scalar_size(GGUFType t, const std::string& path) {
  switch (t) {
    case GGUFType::U8: case GGUFType::I8: case GGUFType::BOOL: return 1;
    case GGUFType::U16: case GGUFType::I16: return 2;
    case GGUFType::U32: case GGUFType::I32: case GGUFType::F32: return 4;
    case GGUFType::U64: case GGUFType::I64: case GGUFType::F64: return 8;
    default: fail(path, "unknown GGUF value type " + std::to_string((uint32_t)t));
  }
}

void read_scalar(Cursor& c, GGUFType t, int64_t* i, double* f) {
  switch (t) {
    case GGUFType::U8: *i = c.read<uint8_t>(); break;
    case GGUFType::I8: *i = c.read<int8_t>(); break;
    case GGUFType::BOOL: *i = c.read<uint8_t>() != 0; break;
    case GGUFType::U16: *i = c.read<uint16_t>(); break;
    case GGUFType::I16: *i = c.read<int16_t>(); break;
    case GGUFType::U32: *i = c.read<uint32_t>(); break;
    case GGUFType::I32: *i = c.read<int32_t>(); break;
    case GGUFType::U64: *i = (int64_t)c.read<uint64_t>(); break;
    case GGUFType::I64: *i = c.read<int64_t>(); break;
    case GGUFType::F32: *f = c.read<float>(); break;
    case GGUFType::F64: *f = c.read<double>(); break;
    default: fail(c.path, "unknown GGUF scalar type " + std::to_string((uint32_t)t));
  }
}

bool is_float(GGUFType t) { return t == GGUFType::F32 || t == GGUFType::F64; }

}  // namespace

const char* ggml_type_name(uint32_t t) {
  static const char* names[] = {"F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                                "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
                                "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
                                "IQ1_M", "BF16"};
  return t < sizeof(names) / sizeof(names[0]) ? names[t] : "unknown";
}

GGUFFile::GGUFFile(const std::string& path) : file_(path) {
  Cursor c{file_.data(), file_.size(), 0, path};
  if (file_.size() < 4 || std::memcmp(file_.data(), "GGUF", 4) != 0) fail(path, "not a GGUF file (bad magic)");
  c.pos = 4;
  version_ = c.read<uint32_t>();
  if (version_ != 2 && version_ != 3) fail(path, "unsupported GGUF version " + std::to_string(version_) + " (expected 2 or 3)");
  uint64_t n_tensors = c.read<uint64_t>();
  uint64_t n_kv = c.read<uint64_t>();
  // Every KV needs >= 12 bytes and every tensor info >= 24: reject counts the file cannot hold.
  if (n_kv > file_.size() / 12 || n_tensors > file_.size() / 24)
    fail(path, "GGUF header counts (" + std::to_string(n_kv) + " keys, " + std::to_string(n_tensors) +
                   " tensors) exceed what the file can hold");
  for (uint64_t k = 0; k < n_kv; k++) {
    std::string key = c.str();
    GGUFValue v;
    v.type = (GGUFType)c.read<uint32_t>();
    if (v.type == GGUFType::STRING) {
      v.s = c.str();
    } else if (v.type == GGUFType::ARRAY) {
      v.arr_type = (GGUFType)c.read<uint32_t>();
      uint64_t n = c.read<uint64_t>();
      if (v.arr_type == GGUFType::STRING) {
        if (n > (file_.size() - c.pos) / 8) fail(path, "GGUF array " + quote(key) + " length exceeds the file");
        v.strs.reserve(n);
        for (uint64_t i = 0; i < n; i++) v.strs.push_back(c.str());
      } else if (v.arr_type == GGUFType::ARRAY) {
        fail(path, "nested GGUF arrays are not supported (key " + quote(key) + ")");
      } else {
        size_t es = scalar_size(v.arr_type, path);
        if (n > (file_.size() - c.pos) / es) fail(path, "GGUF array " + quote(key) + " length exceeds the file");
        if (is_float(v.arr_type)) v.floats.resize(n); else v.ints.resize(n);
        for (uint64_t i = 0; i < n; i++) {
          int64_t iv = 0;
          double fv = 0;
          read_scalar(c, v.arr_type, &iv, &fv);
          if (is_float(v.arr_type)) v.floats[i] = fv; else v.ints[i] = iv;
        }
      }
    } else {
      read_scalar(c, v.type, &v.i, &v.f);
    }
    kv_[key] = std::move(v);
  }
  for (uint64_t t = 0; t < n_tensors; t++) {
    GGUFTensorInfo ti;
    ti.name = c.str();
    uint32_t nd = c.read<uint32_t>();
    if (nd == 0 || nd > 4) fail(path, "tensor " + quote(ti.name) + " has " + std::to_string(nd) + " dimensions (1..4 allowed)");
    for (uint32_t d = 0; d < nd; d++) ti.dims.push_back(c.read<uint64_t>());
    ti.type = c.read<uint32_t>();
    ti.offset = c.read<uint64_t>();
    tensors_.push_back(std::move(ti));
  }
  uint64_t align = (uint64_t)get_int("general.alignment", 32);
  if (align == 0 || (align & (align - 1))) fail(path, "general.alignment must be a power of two");
  data_offset_ = (c.pos + align - 1) / align * align;
  if (!tensors_.empty() && data_offset_ > file_.size()) fail(path, "GGUF data section starts beyond the end of the file");
  const uint64_t data_size = file_.size() - std::min<uint64_t>(data_offset_, file_.size());
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto& ti : tensors_) {
    uint64_t numel = 1;
    for (uint64_t d : ti.dims) {
      if (d != 0 && numel > (1ull << 40) / d) fail(path, "tensor " + quote(ti.name) + " shape overflows");
      numel *= d;
    }
    if (ti.offset % align) fail(path, "tensor " + quote(ti.name) + " offset " + std::to_string(ti.offset) + " is not aligned");
    uint64_t nbytes = 0;
    switch (ti.type) {
      case GGML_F32: nbytes = numel * 4; break;
      case GGML_F16: case GGML_BF16: nbytes = numel * 2; break;
      case GGML_Q8_0:
        if (ti.dims[0] % 32) fail(path, "tensor " + quote(ti.name) + " is Q8_0 but its rows are not a multiple of 32");
        nbytes = numel / 32 * 34;
        break;
      default: continue;  // listed, but only loading it fails (with the type's name)
    }
    if (ti.offset > data_size || nbytes > data_size - ti.offset)
      fail(path, "tensor " + quote(ti.name) + " data [" + std::to_string(ti.offset) + ", +" + std::to_string(nbytes) +
                     ") out of range (data section is " + std::to_string(data_size) + " bytes)");
    ti.readable = true;
    ti.data = file_.data() + data_offset_ + ti.offset;
    ti.nbytes = nbytes;
    ranges.emplace_back(ti.offset, ti.offset + nbytes);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); i++)
    if (ranges[i].first < ranges[i - 1].second) fail(path, "GGUF tensor data ranges overlap");
}

const GGUFValue& GGUFFile::get(const std::string& key) const {
  auto it = kv_.find(key);
  if (it == kv_.end()) fail(file_.path(), "missing GGUF key " + quote(key));
  return it->second;
}

std::string GGUFFile::get_string(const std::string& key, const std::string& dflt) const {
  auto it = kv_.find(key);
  if (it == kv_.end() || it->second.type != GGUFType::STRING) return dflt;
  return it->second.s;
}

int64_t GGUFFile::get_int(const std::string& key, int64_t dflt) const {
  auto it = kv_.find(key);
  if (it == kv_.end() || it->second.type == GGUFType::STRING || it->second.type == GGUFType::ARRAY ||
      is_float(it->second.type))
    return dflt;
  return it->second.i;
}

}  // namespace kt
