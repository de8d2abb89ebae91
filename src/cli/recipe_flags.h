// The CLI side of "options declared once" (quant/options.h): registers the `quantize` flags of
// recipe option sections through the cli/options.h helpers (so every value is range-checked
// when parsed, with the same messages and --help as every other option), bound to a Recipe.
#pragma once
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "cli/options.h"
#include "quant/recipe.h"

namespace kt::cli {

class RecipeFlags {
 public:
  // Flags land in `r` (which must outlive the parse); `r` starts at the declared defaults.
  RecipeFlags(CLI::App* c, Recipe& r) : c_(c), r_(r) {}
  // Registers the flags of section `s` (its options without a flag are skipped).
  void add(const OptionSection& s);
  // After parsing: copies the values the CLI holds in another type (floats, names) into the recipe.
  void commit() const;
  // The flags registered, in order.
  const std::vector<std::string>& flags() const { return flags_; }

 private:
  CLI::App* c_;
  Recipe& r_;
  std::deque<float> f32_;
  std::deque<std::string> names_;
  std::vector<std::function<void()>> commits_;
  std::vector<std::string> flags_;
  friend class FlagVisitor;
};

}  // namespace kt::cli
