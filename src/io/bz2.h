// bzip2-compressed files (HellaSwag in llama.cpp's text form ships as .txt.bz2).
#pragma once
#include <cstddef>
#include <string>

namespace kt {

// Reads PATH (a regular file of at most max_in bytes, through read_file) and decompresses it;
// fails naming PATH if it is not bzip2 data, is truncated, or decompresses to more than
// max_out bytes (the size in the file is never trusted: output grows as it is produced).
std::string read_bz2_file(const std::string& path, size_t max_in, size_t max_out);

}  // namespace kt
