// Added (special) tokens matched in one pass: leftmost-longest, as HF tokenizers does and as
// kurtail always did (at each position the longest added token that starts there; none: move
// one byte on). An Aho-Corasick automaton over the reversed contents, run backwards over the
// text, gives the longest token starting at every position in O(text + tokens), so 200k added
// tokens cost no more per byte than one.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kt {

class AddedMatcher {
 public:
  // contents[i] (non-empty; an empty one never matches); equal contents: the first wins.
  explicit AddedMatcher(const std::vector<std::string>& contents);
  bool empty() const { return max_len_ == 0; }
  size_t max_len() const { return max_len_; }
  // (*best)[i] = 1 + index of the longest content that starts at text[i] and ends within text,
  // 0 where none does.
  void longest_at(std::string_view text, std::vector<int32_t>* best) const;

 private:
  int child(int node, unsigned char c) const {
    auto it = edges_.find((uint64_t)node << 8 | c);
    return it == edges_.end() ? -1 : it->second;
  }
  std::unordered_map<uint64_t, int> edges_;  // (node, byte) -> node, over reversed contents
  std::vector<int> fail_, out_;              // out_: 1 + index of the longest content at/under the suffix chain
  size_t max_len_ = 0;
};

}  // namespace kt
