#include <algorithm>

#include "io/tokenizer.h"
#include "io/tokenizer_stream.h"
#include "util/interrupt.h"

namespace kt {

bool parse_byte_piece(std::string_view p, unsigned char* byte) {
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return false;
  int hi = hex(p[3]), lo = hex(p[4]);
  if (hi < 0 || lo < 0) return false;
  *byte = (unsigned char)(hi * 16 + lo);
  return true;
}

std::vector<int> Tokenizer::encode(std::string_view text, size_t chunk_bytes) const {
  if (chunk_bytes == 0) chunk_bytes = 1;
  auto s = stream(chunk_bytes);
  std::vector<int> out;
  for (size_t i = 0; i < text.size(); i += std::min(chunk_bytes, text.size() - i))
    s->feed(text.substr(i, std::min(chunk_bytes, text.size() - i)), &out);
  s->finish(&out);
  return out;
}

std::vector<int> Tokenizer::encode_for_model(std::string_view text) const {
  std::vector<int> ids;
  if (add_bos && bos >= 0) ids.push_back(bos);
  auto t = encode(text);
  ids.insert(ids.end(), t.begin(), t.end());
  return ids;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string s;
  int prev = -1;
  for (int id : ids) {
    if (id == bos && prev == -1) {
      prev = id;
      continue;
    }
    s += piece(prev < 0 ? bos : prev, id);
    prev = id;
  }
  return s;
}

namespace {
bool ascii_graph(char c) { return c > ' ' && c < 0x7f; }
}  // namespace

size_t utf8_boundary(std::string_view buf, size_t p) {
  auto cont = [](char c) { return ((unsigned char)c & 0xc0) == 0x80; };
  if (p >= buf.size()) {
    p = buf.size();
    size_t lead = p;
    while (lead > 0 && p - lead < 4 && cont(buf[lead - 1])) lead--;
    if (lead == 0 || p - lead >= 4) return p;  // not UTF-8 there: any byte will do
    unsigned char c = (unsigned char)buf[lead - 1];
    size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    return lead - 1 + n <= p ? p : lead - 1;
  }
  size_t q = p;
  while (q > 0 && p - q < 4 && cont(buf[q])) q--;
  return p - q < 4 ? q : p;
}

// True if a byte in the 3 before p is a UTF-8 lead byte whose claimed length reaches p: in
// invalid UTF-8 ("\xe1a a") a tokenizer that steps by the lead byte's length (llama.cpp's
// utf8_len) takes the "a " after it as part of one character, so p is not a boundary.
static bool inside_claimed_char(std::string_view buf, size_t p) {
  for (size_t j = p >= 3 ? p - 3 : 0; j < p; j++) {
    const unsigned char c = (unsigned char)buf[j];
    const size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (j + len > p) return true;
  }
  return false;
}

size_t last_space_cut(std::string_view buf, size_t from) {
  if (buf.size() < 3) return 0;
  for (size_t p = buf.size() - 2; p >= std::max<size_t>(from, 1); p--)
    if (buf[p] == ' ' && ascii_graph(buf[p - 1]) && ascii_graph(buf[p + 1]) && !inside_claimed_char(buf, p)) return p;
  return 0;
}

bool space_only_leading(std::string_view piece, std::string_view space) {
  if (space.empty()) return true;
  size_t i = 0;
  while (piece.compare(i, space.size(), space) == 0) i += space.size();
  return piece.find(space, i) == std::string_view::npos;
}

// Parts of about chunk_ bytes: the last cut within the first chunk_ bytes, else within twice
// that, and so on; none in a whole kMaxUncutBytes: a forced cut.
void CutStream::feed(std::string_view bytes, std::vector<int>* out) {
  buf_.append(bytes);
  size_t st = 0;  // start of what is not encoded yet
  while (buf_.size() - st >= next_try_) {
    check_interrupted();
    const std::string_view rest = std::string_view(buf_).substr(st);
    size_t p = 0;
    for (size_t lim = chunk_;; lim = lim > rest.size() / 2 ? rest.size() : 2 * lim) {
      const size_t n = std::min(rest.size(), lim + 1);  // +1: a cut needs the byte after it
      p = cut_(rest.substr(0, n), 0);
      if (p != 0 || n == rest.size()) break;
    }
    PartStart after = PartStart::kCut;
    if (p == 0 && rest.size() >= kMaxUncutBytes) {  // bounded memory: cut anyway (tokenizer_stream.h)
      p = utf8_boundary(rest, kMaxUncutBytes);
      if (p == 0) p = kMaxUncutBytes;
      after = PartStart::kForced;
    }
    if (p == 0) {  // no cut yet: look again when the rest has doubled (linear overall)
      next_try_ = rest.size() + std::max(chunk_, rest.size());
      break;
    }
    part_(rest.substr(0, p), next_start_, out);
    next_start_ = after;
    st += p;
    next_try_ = chunk_;
  }
  buf_.erase(0, st);
}

void CutStream::finish(std::vector<int>* out) {
  check_interrupted();
  if (!buf_.empty() || next_start_ == PartStart::kText) part_(buf_, next_start_, out);
  buf_.clear();
  next_start_ = PartStart::kCut;
}

}  // namespace kt
