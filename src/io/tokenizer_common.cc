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

size_t last_space_cut(std::string_view buf, size_t from) {
  if (buf.size() < 3) return 0;
  for (size_t p = buf.size() - 2; p >= std::max<size_t>(from, 1); p--)
    if (buf[p] == ' ' && ascii_graph(buf[p - 1]) && ascii_graph(buf[p + 1])) return p;
  return 0;
}

bool space_only_leading(std::string_view piece, std::string_view space) {
  if (space.empty()) return true;
  size_t i = 0;
  while (piece.compare(i, space.size(), space) == 0) i += space.size();
  return piece.find(space, i) == std::string_view::npos;
}

void CutStream::feed(std::string_view bytes, std::vector<int>* out) {
  buf_.append(bytes);
  while (buf_.size() >= next_try_) {
    check_interrupted();
    size_t p = cut_(buf_, searched_);
    if (p == 0) {  // no cut yet: look again when another chunk has arrived (searching only the new bytes)
      searched_ = buf_.size() - 1;
      next_try_ = buf_.size() + chunk_;
      return;
    }
    part_(std::string_view(buf_).substr(0, p), first_, out);
    first_ = false;
    buf_.erase(0, p);
    searched_ = buf_.empty() ? 0 : buf_.size() - 1;  // p was the last cut: none before this
    next_try_ = buf_.size() + chunk_;
  }
}

void CutStream::finish(std::vector<int>* out) {
  check_interrupted();
  if (!buf_.empty() || first_) part_(buf_, first_, out);
  buf_.clear();
  first_ = false;
}

}  // namespace kt
