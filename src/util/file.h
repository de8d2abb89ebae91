// File helpers: read-only memory maps, whole-file reads, atomic writes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "util/output.h"  // write_file_atomic

namespace kt {

// Read-only mmap of a whole file. Movable, not copyable. Empty files map to size 0.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Size caps for whole-file reads: what a legitimate file of each kind can need (the largest
// real tokenizer.json files are ~35 MB; configs and recipes are kilobytes).
inline constexpr size_t kMaxJsonBytes = 16u << 20;          // config.json, recipe.json, index, generation_config
inline constexpr size_t kMaxTokenizerBytes = 256u << 20;    // tokenizer.json / tokenizer.model / tokenizer.bin
inline constexpr size_t kMaxTextBytes = size_t(4) << 30;    // evaluation / calibration text

// Whole-file read. Refuses anything that is not a regular file (a FIFO, a device such as
// /dev/zero, a directory) before reading a byte (opened with O_NONBLOCK so a FIFO cannot block
// the open), and files larger than max_bytes.
std::string read_file(const std::string& path, size_t max_bytes = kMaxJsonBytes);
// The first n bytes of a regular file (fewer if it is shorter).
std::string read_prefix(const std::string& path, size_t n);
// Opens PATH for reading the same way (regular file or fail); returns the fd, *size its size.
int open_regular_file(const std::string& path, size_t* size);
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);


// Base directory of the shared data: $KURTAIL_DATA, else ../shared/data.
std::string data_dir();

}  // namespace kt
