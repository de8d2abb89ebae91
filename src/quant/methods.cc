#include "quant/methods.h"

#include <algorithm>

#include "quant/method.h"

namespace kt {

// Each method's file under quant/methods/ defines its factory and, if it has settings, its
// option section. Adding a method: its file, its two declarations here and its registry line.
std::unique_ptr<Method> make_rtn();
std::unique_ptr<Method> make_quarot();
std::unique_ptr<Method> make_kurtail();
std::unique_ptr<Method> make_spinquant();
std::unique_ptr<Method> make_smoothquant();
std::unique_ptr<Method> make_smoothrot();  // smoothing of the down_proj input only
std::unique_ptr<Method> make_duquant();
std::unique_ptr<Method> make_crossquant();
extern const OptionSection kR4Options;  // quant/pipeline.cc
extern const OptionSection kKurtailOptions, kSpinquantOptions, kSmoothingOptions, kDuquantOptions, kCrossquantOptions;

const std::vector<MethodInfo>& methods() {
  //   name, summary, r1, r2, r3, r4, online_had_inputs, factory, options
  static const std::vector<MethodInfo> m = {
      {"rtn", "no transform; round-to-nearest (or GPTQ) weights", false, false, false, false, false, make_rtn,
       nullptr},
      {"quarot", "randomized Hadamard R1/R2 fused, online Hadamard R3/R4", true, true, true, true, false, make_quarot,
       nullptr},
      {"kurtail", "as quarot, with R1 and per-layer R2 learned to minimise kurtosis", true, true, true, true, false,
       make_kurtail, &kKurtailOptions},
      {"spinquant", "as quarot, with R1 and per-layer R2 learned end to end (Cayley SGD on the quantized model's loss)",
       true, true, true, true, false, make_spinquant, &kSpinquantOptions},
      {"smoothquant", "per-channel smoothing folded into the norms and up_proj", false, false, false, false, false,
       make_smoothquant, &kSmoothingOptions},
      {"smoothrot", "quarot + smoothing of the down_proj input before R4", true, true, true, true, false,
       make_smoothrot, &kSmoothingOptions},
      {"smoothrot-all", "smoothing + an online Hadamard before every linear input", false, true, true, true, true,
       make_smoothquant, &kSmoothingOptions},
      {"duquant", "smoothing, block rotation, zigzag permutation, second rotation per linear input", false, false,
       false, false, false, make_duquant, &kDuquantOptions},
      {"crossquant", "per-element activation scale t_i^a c_j^(1-a)", false, false, false, false, false,
       make_crossquant, &kCrossquantOptions},
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

bool method_runs_on(const MethodInfo& m, const ModelSpec& s, std::string* why) {
  if (std::string own = m.make()->unsupported(s); !own.empty()) {
    if (why) *why = std::string("method ") + m.name + " does not support " + own + " yet";
    return false;
  }
  if (!s.moe()) return true;
  if (m.online_had_inputs || m.make()->needs().layer_stats) {
    if (why)
      *why = std::string("method ") + m.name +
             " is not supported on mixture-of-experts models yet: its statistics and online transforms are per "
             "layer site, not per expert (rtn, quarot and kurtail are)";
    return false;
  }
  return true;
}

std::vector<const OptionSection*> option_sections() {
  std::vector<const OptionSection*> v = {&kGptqOptions, &kR4Options};
  for (bool every : {true, false})
    for (const MethodInfo& m : methods())
      if (m.options && m.options->in_every_recipe == every && std::find(v.begin(), v.end(), m.options) == v.end())
        v.push_back(m.options);
  return v;
}

bool method_has_section(std::string_view method, const OptionSection& s) {
  const MethodInfo* m = find_method(method);
  return m && m->options == &s;
}

std::string section_methods(const OptionSection& s) {
  std::string names;
  int n = 0;
  for (const MethodInfo& m : methods())
    if (m.options == &s) names += (n++ ? ", " : "") + std::string(m.name);
  return n == 1 ? "only method " + names + " has them" : "only methods " + names + " have them";
}

}  // namespace kt
