// The registry of quantization methods: the only list of method names. The CLI (--method and
// its help), recipe validation, `kurtail info` and Recipe::set_method read it.
// What each method does to the model is in quant/pipeline.cc and transform/ (one branch per
// method still; docs/DESIGN.md says where this is going).
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace kt {

struct MethodInfo {
  const char* name;
  const char* summary;  // one line for --help and docs
  // Rotations the method implies (QuaRot's R1 residual, R2 per-head V/O, R3 online Q/K,
  // R4 online down_proj input); --no-rN switches them off.
  bool r1, r2, r3, r4;
  bool online_had_inputs;  // an online Hadamard before every linear input (smoothrot-all)
  bool layer_stats;        // needs per-layer channel statistics of calibration activations
};

const std::vector<MethodInfo>& methods();
// The method called `name`, or null.
const MethodInfo* find_method(std::string_view name);
// "rtn, quarot, ..." in registry order.
std::string method_names();

}  // namespace kt
