// recipe.json (our quantized-model recipe). Property: from_json(to_json(r)) == r, compared
// through the serialised text.
#include "fuzz_util.h"
#include "quant/recipe.h"

using namespace kt;

static const std::vector<std::string>& seeds() {
  static std::vector<std::string> s = [] {
    std::vector<std::string> out;
    for (const char* m : {"rtn", "quarot", "kurtail", "smoothquant", "smoothrot-all", "duquant", "crossquant"}) {
      Recipe r;
      r.set_method(m);
      r.set_bits(4, 4, 4, 64);
      out.push_back(r.to_json());
    }
    return out;
  }();
  return s;
}

KT_FUZZ_SEEDS(&seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Recipe r;
  try {
    r = Recipe::from_json(std::string((const char*)data, size), "recipe.json");
  } catch (const Error&) {
    return 0;
  }
  std::string once = r.to_json();
  std::string twice = Recipe::from_json(once, "recipe.json").to_json();  // must not throw
  if (once != twice) std::abort();
  return 0;
}
