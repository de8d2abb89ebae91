#include "quant/methods.h"

namespace kt {

const std::vector<MethodInfo>& methods() {
  //                        name, summary, r1, r2, r3, r4, online_had_inputs, layer_stats
  static const std::vector<MethodInfo> m = {
      {"rtn", "no transform; round-to-nearest (or GPTQ) weights", false, false, false, false, false, false},
      {"quarot", "randomized Hadamard R1/R2 fused, online Hadamard R3/R4", true, true, true, true, false, false},
      {"kurtail", "as quarot, with R1 and per-layer R2 learned to minimise kurtosis", true, true, true, true, false,
       false},
      {"smoothquant", "per-channel smoothing folded into the norms and up_proj", false, false, false, false, false,
       true},
      {"smoothrot", "quarot + smoothing of the down_proj input before R4", true, true, true, true, false, true},
      {"smoothrot-all", "smoothing + an online Hadamard before every linear input", false, true, true, true, true,
       true},
      {"duquant", "smoothing, block rotation, zigzag permutation, second rotation per linear input", false, false,
       false, false, false, true},
      {"crossquant", "per-element activation scale t_i^a c_j^(1-a)", false, false, false, false, false, true},
  };
  return m;
}

const MethodInfo* find_method(std::string_view name) {
  for (const MethodInfo& m : methods())
    if (name == m.name) return &m;
  return nullptr;
}

std::string method_names() {
  std::string s;
  for (const MethodInfo& m : methods()) s += (s.empty() ? "" : ", ") + std::string(m.name);
  return s;
}

}  // namespace kt
