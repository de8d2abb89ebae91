#include "io/bz2.h"

#include <bzlib.h>

#include <cstring>

#include "util/error.h"
#include "util/file.h"

namespace kt {

std::string read_bz2_file(const std::string& path, size_t max_in, size_t max_out) {
  std::string in = read_file(path, max_in);
  bz_stream z;
  std::memset(&z, 0, sizeof z);
  if (BZ2_bzDecompressInit(&z, 0, 0) != BZ_OK) fail(path, "cannot start bzip2 decompression");
  std::string out;
  size_t pos = 0;  // input consumed so far (next_in advances over it)
  z.next_in = in.data();
  z.avail_in = 0;
  char buf[1 << 16];
  int rc = BZ_OK;
  while (rc != BZ_STREAM_END) {
    if (z.avail_in == 0 && pos < in.size()) {
      const size_t take = std::min<size_t>(in.size() - pos, 1u << 30);
      z.next_in = in.data() + pos;
      z.avail_in = (unsigned)take;
      pos += take;
    }
    z.next_out = buf;
    z.avail_out = sizeof buf;
    rc = BZ2_bzDecompress(&z);
    if (rc != BZ_OK && rc != BZ_STREAM_END) {
      BZ2_bzDecompressEnd(&z);
      fail(path, rc == BZ_DATA_ERROR_MAGIC ? "not bzip2 data" : "corrupt bzip2 data (error " + std::to_string(rc) + ")");
    }
    const size_t got = sizeof buf - z.avail_out;
    if (out.size() + got > max_out) {
      BZ2_bzDecompressEnd(&z);
      fail(path, "decompresses to more than " + std::to_string(max_out) + " bytes");
    }
    out.append(buf, got);
    if (rc == BZ_OK && got == 0 && z.avail_in == 0 && pos >= in.size()) {
      BZ2_bzDecompressEnd(&z);
      fail(path, "bzip2 data ends before its end-of-stream mark (truncated file)");
    }
  }
  BZ2_bzDecompressEnd(&z);
  return out;
}

}  // namespace kt
