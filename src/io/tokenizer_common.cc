#include "io/tokenizer.h"

namespace kt {

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
