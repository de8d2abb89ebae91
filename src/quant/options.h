// Options declared once (gemma.cpp VisitFields): a method's settings are listed in ONE visit
// function, each field once with its recipe.json key, its `quantize` flag, default, help and
// range. Three visitors read that list: the recipe.json writer and reader (quant/recipe.cc),
// the defaults of a new Recipe (same file) and the CLI (cli/recipe_flags.cc, which keeps
// CLI11 out of quant/). A new option is one line in its method's file.
#pragma once

namespace kt {

struct Recipe;

// Upper bound for lengths and counts given on the command line (tokens, windows, samples):
// far above any model's context, low enough that no product of two overflows an int64 byte count.
constexpr int kMaxCount = 1 << 24;

// One option: `key` inside its recipe.json section; `flag` of `kurtail quantize` or null when
// the option is recipe-only (set by the method itself, or not exposed); `help` for --help.
struct Opt {
  const char* key;
  const char* flag;
  const char* help;
};
// A real in the interval from lo to hi, each end closed unless *_open. The CLI takes this
// range; recipe.json is checked against it too (quant/validate_model.cc), up to load_hi when
// set (> 0): a recipe may carry a value the CLI does not offer (kurtail.lr up to 1e6).
struct RealRange {
  double lo, hi;
  bool lo_open = false, hi_open = false;
  double load_hi = 0;
};
// An integer in [lo, hi]; with zero_default the CLI also accepts 0 (it selects the default).
// recipe.json is checked against [lo, hi] (hi = kMaxCount reads as "no upper bound" in messages).
struct IntRange {
  int lo, hi;
  bool zero_default = false;
};

class OptionVisitor {
 public:
  virtual ~OptionVisitor() = default;
  virtual void real(double& v, double dflt, const Opt& o, RealRange r) = 0;
  // A real that the CLI parses as a float and widens into v (--percdamp always has: 0.01f is
  // what recipe.json records and what GPTQ dampens with, so it stays a float there).
  virtual void real_f32(double& v, double dflt, const Opt& o, RealRange r) = 0;
  virtual void integer(int& v, int dflt, const Opt& o, IntRange r) = 0;
  // A boolean; on the CLI a flag that sets it (so its default is false when it has a flag).
  virtual void flag(bool& v, bool dflt, const Opt& o) = 0;
  // A boolean (in recipe.json) that the CLI spells as one of two names (--kt-loss squared|mean).
  virtual void named_bool(bool& v, bool dflt, const Opt& o, const char* if_true, const char* if_false) = 0;
};

// The options stored under one recipe.json object ("duquant": {...}).
struct OptionSection {
  const char* key;
  void (*visit)(Recipe&, OptionVisitor&);
  // Written in every recipe whatever its method (recipe.json has always carried these
  // sections); false: only in recipes whose method lists the section (kurtail), and refused in others.
  bool in_every_recipe;
};

}  // namespace kt
