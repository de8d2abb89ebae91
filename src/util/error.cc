#include "util/error.h"

#include <cstdint>
#include <cstdio>

namespace kt {

namespace {

// Length of the well-formed UTF-8 sequence at s[i] whose code point is safe to print, else 0.
// Unsafe: C1 controls (U+0080..U+009F), bidi embeddings/overrides/isolates (U+202A..U+202E,
// U+2066..U+2069) that reorder what a terminal shows, and U+2028/U+2029 (line breaks).
size_t safe_utf8_len(std::string_view s, size_t i) {
  const unsigned char c = (unsigned char)s[i];
  size_t len;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) len = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) len = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) len = 4, cp = c & 0x07;
  else return 0;
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; k++) {
    const unsigned char d = (unsigned char)s[i + k];
    if ((d & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (d & 0x3f);
  }
  static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;  // overlong / surrogate
  if (cp <= 0x9f) return 0;
  if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 || cp == 0x2029) return 0;
  return len;
}

}  // namespace

std::string printable(std::string_view s, size_t max_bytes) {
  std::string out;
  const size_t n = s.size() < max_bytes ? s.size() : max_bytes;
  out.reserve(n + 16);
  for (size_t i = 0; i < n;) {
    const unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\') out += '\\';
      out += (char)c;
      i++;
      continue;
    }
    if (size_t len = safe_utf8_len(s, i); len > 0 && i + len <= n) {
      out.append(s.data() + i, len);
      i += len;
      continue;
    }
    char buf[5];
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    out += buf;
    i++;
  }
  if (n < s.size()) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string fmt_num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

std::string quote(std::string_view s, size_t max_bytes) {
  std::string out(1, '\'');
  out += printable(s, max_bytes);
  out += '\'';
  return out;
}

}  // namespace kt
