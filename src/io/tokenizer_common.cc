#include "io/tokenizer.h"

namespace kt {

bool parse_byte_piece(std::string_view p, unsigned char* byte) {
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return false;
  int hi = hex(p[3]), lo = hex(p[4]);
  if (hi < 0 || lo < 0) return false;
  *byte = (unsigned char)(hi * 16 + lo);
  return true;
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

}  // namespace kt
