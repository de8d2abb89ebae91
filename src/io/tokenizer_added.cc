#include "io/tokenizer_added.h"

#include <algorithm>
#include <deque>

#include "util/interrupt.h"

namespace kt {

AddedMatcher::AddedMatcher(const std::vector<std::string>& contents) {
  fail_.push_back(0);
  out_.push_back(0);
  for (size_t i = 0; i < contents.size(); i++) {
    const std::string& s = contents[i];
    if (s.empty()) continue;
    max_len_ = std::max(max_len_, s.size());
    int node = 0;
    for (size_t k = s.size(); k-- > 0;) {  // reversed
      int c = child(node, (unsigned char)s[k]);
      if (c < 0) {
        c = (int)fail_.size();
        edges_.emplace((uint64_t)node << 8 | (unsigned char)s[k], c);
        fail_.push_back(0);
        out_.push_back(0);
      }
      node = c;
    }
    if (out_[node] == 0) out_[node] = (int)i + 1;  // first wins among equal contents
  }
  // Children lists for the breadth-first pass (edges_ is keyed by parent).
  std::vector<std::vector<std::pair<unsigned char, int>>> kids(fail_.size());
  for (auto& [key, c] : edges_) kids[key >> 8].emplace_back((unsigned char)(key & 0xff), c);
  std::deque<int> q;
  for (auto& [ch, c] : kids[0]) q.push_back(c);  // depth 1: fail to the root
  while (!q.empty()) {
    int u = q.front();
    q.pop_front();
    if (out_[u] == 0) out_[u] = out_[fail_[u]];  // a terminal node is longer than anything on its chain
    for (auto& [ch, v] : kids[u]) {
      int f = fail_[u];
      while (f != 0 && child(f, ch) < 0) f = fail_[f];
      int g = child(f, ch);
      fail_[v] = (g >= 0 && g != v) ? g : 0;
      q.push_back(v);
    }
  }
}

void AddedMatcher::longest_at(std::string_view text, std::vector<int32_t>* best) const {
  best->assign(text.size(), 0);
  int node = 0;
  for (size_t i = text.size(); i-- > 0;) {
    if ((i & 0xffff) == 0) check_interrupted();
    unsigned char c = (unsigned char)text[i];
    while (node != 0 && child(node, c) < 0) node = fail_[node];
    int g = child(node, c);
    node = g < 0 ? 0 : g;
    (*best)[i] = out_[node];
  }
}

}  // namespace kt
