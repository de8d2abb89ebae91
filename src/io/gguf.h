// GGUF (v2/v3) reader: metadata key/values and tensor infos, all validated against the file.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "util/file.h"

namespace kt {

enum class GGUFType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  U64 = 10, I64 = 11, F64 = 12
};

// A metadata value. Scalars land in i (integers, bools), f (floats) or s (strings);
// arrays in the matching vector, with arr_type telling which.
struct GGUFValue {
  GGUFType type = GGUFType::U8;
  GGUFType arr_type = GGUFType::U8;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strs;
};

struct GGUFTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the fastest-varying
  uint32_t type = 0;           // ggml_type
  uint64_t offset = 0;         // relative to the data section
  // For the types kurtail reads (F32, F16, BF16, Q8_0): the validated bytes in the mapping.
  bool readable = false;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

// ggml_type values kurtail reads and writes.
enum GGMLType : uint32_t { GGML_F32 = 0, GGML_F16 = 1, GGML_Q8_0 = 8, GGML_BF16 = 30 };
const char* ggml_type_name(uint32_t t);

class GGUFFile {
 public:
  explicit GGUFFile(const std::string& path);
  uint32_t version() const { return version_; }
  bool has(const std::string& key) const { return kv_.count(key) > 0; }
  const GGUFValue& get(const std::string& key) const;  // throws naming the file and key
  const std::map<std::string, GGUFValue>& kv() const { return kv_; }
  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  const std::string& path() const { return file_.path(); }
  std::string get_string(const std::string& key, const std::string& dflt) const;
  int64_t get_int(const std::string& key, int64_t dflt) const;

 private:
  MappedFile file_;
  uint32_t version_ = 0;
  std::map<std::string, GGUFValue> kv_;
  std::vector<GGUFTensorInfo> tensors_;
  uint64_t data_offset_ = 0;
};

}  // namespace kt
