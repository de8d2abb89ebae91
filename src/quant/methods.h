// The registry of quantization methods: the only list of method names. The CLI (--method and
// its help, the method options' flags), recipe validation and recipe.json's option sections,
// `kurtail info`, Recipe::set_method and quantize_model read it. What each method does is in
// its own file under quant/methods/, behind the interface in quant/method.h.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/spec.h"
#include "quant/options.h"

namespace kt {

class Method;

struct MethodInfo {
  const char* name;
  const char* summary;  // one line for --help and docs
  // Rotations the method implies (QuaRot's R1 residual, R2 per-head V/O, R3 online Q/K,
  // R4 online down_proj input); --no-rN switches them off.
  bool r1, r2, r3, r4;
  bool online_had_inputs;  // an online Hadamard before every linear input (smoothrot-all)
  std::unique_ptr<Method> (*make)();
  const OptionSection* options;  // the method's settings in recipe.json and on the CLI, or null
};

const std::vector<MethodInfo>& methods();
// The method called `name`, or null.
const MethodInfo* find_method(std::string_view name);
// "rtn, quarot, ..." in registry order.
std::string method_names();
// Whether the method can quantize a model of this spec; why (when given) says why not. On
// mixture-of-experts models the methods with per-site statistics (SmoothQuant, DuQuant,
// CrossQuant) or online input Hadamards are not built yet: their statistics and transforms are
// per layer site, and an expert's inputs are a subset of the site's rows.
bool method_runs_on(const MethodInfo& m, const ModelSpec& s, std::string* why = nullptr);

// The GPTQ settings (quant/gptq.cc): a weight algorithm's, not a method's, but stored and
// declared the same way.
extern const OptionSection kGptqOptions;

// Every option section, each once: GPTQ's, then the methods' sections that every recipe
// carries, then the method-only ones, each group in registry order. This is recipe.json's
// read order and the order of the flags in `quantize --help`.
std::vector<const OptionSection*> option_sections();
// Whether `method` (a registry name) uses section `s`.
bool method_has_section(std::string_view method, const OptionSection& s);
// "only method kurtail has them" / "only methods a, b have them": who uses `s`, for messages.
std::string section_methods(const OptionSection& s);

}  // namespace kt
