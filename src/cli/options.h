// Every option of every subcommand is declared through these helpers, so every value is
// checked when it is parsed (before any model is opened) and --help shows what is allowed:
// numbers are decimal only, finite (no NaN/Inf), and inside the option's range; enumerated
// strings are one of their list; bit widths are the ones the quantizers support; paths are
// not empty. A bad value fails with CLI11's ValidationError, whose text is "--opt: problem";
// main.cc prints it as kurtail's one error line.
// Checks that need the model (a group size that must divide a dimension, a layer index) are
// in check_divides()/check_below(), called right after the model is opened.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "quant/options.h"

namespace kt::cli {

// Quantizer bit widths: 2..8, or 16 meaning "not quantized" (what a recipe may hold when it
// loads: quant/validate_model.h quant_bits_supported). 1 has no symmetric level besides 0
// (scale absmax/0: NaN weights); 9..15 would need codes wider than the int8 storage.
constexpr int kMinBits = 2, kMaxBits = 8, kOffBits = 16;
// Upper bound for lengths and counts (tokens, windows, samples): quant/options.h (the method
// options declared in quant/ use it too).
using kt::kMaxCount;

// Integer in [lo, hi]; with zero_default, 0 is also accepted (it selects the default).
CLI::Option* int_option(CLI::App* c, const std::string& name, int& v, const std::string& desc, int lo, int hi,
                        bool zero_default = false);
// --lm-head-bits (quantize, bench): the output layer's weight and input bits, kMinBits..kMaxBits,
// or 0 for the default (fp32 head unless --quant-lm-head).
CLI::Option* lm_head_bits_option(CLI::App* c, int& v);
// --k-dot (run, bench, eval): how decode attention multiplies queries with a 4-bit K cache,
// "f32" or "q8" (model/kv_cache.h KDot); k_dot_named turns the checked value into the enum.
CLI::Option* k_dot_option(CLI::App* c, std::string& v);
KDot k_dot_named(const std::string& v);
// A comma-separated list of integers, each in [lo, hi] ("0,512,2048"); replaces v.
CLI::Option* int_list_option(CLI::App* c, const std::string& name, std::vector<int>& v, const std::string& desc,
                             int lo, int hi);
// Any unsigned 64-bit value, decimal (seeds). "-1" is refused, not wrapped.
CLI::Option* u64_option(CLI::App* c, const std::string& name, uint64_t& v, const std::string& desc);
// Finite real in the interval from lo to hi, each end closed unless *_open.
CLI::Option* real_option(CLI::App* c, const std::string& name, double& v, const std::string& desc, double lo,
                         double hi, bool lo_open = false, bool hi_open = false);
CLI::Option* real_option(CLI::App* c, const std::string& name, float& v, const std::string& desc, double lo,
                         double hi, bool lo_open = false, bool hi_open = false);
// Quantizer bit width: kMinBits..kMaxBits or kOffBits.
CLI::Option* bits_option(CLI::App* c, const std::string& name, int& v, const std::string& desc);
// One of `choices` (exact match). For a repeatable option (vector) every value is checked.
CLI::Option* choice_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc,
                           const std::vector<std::string>& choices);
CLI::Option* choice_option(CLI::App* c, const std::string& name, std::vector<std::string>& v,
                           const std::string& desc, const std::vector<std::string>& choices);
// A comma-separated list whose items are each one of `choices`.
CLI::Option* choice_list_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc,
                                const std::vector<std::string>& choices);
// A path (or other free text that must not be empty, e.g. a name).
CLI::Option* path_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc);
// Free text (a prompt): anything, including empty.
CLI::Option* text_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc);

// Splits "a, b, c" (Recipe::method_list) into {"a", "b", "c"}.
std::vector<std::string> split_list(const std::string& s, char sep = ',');

// After the model is known: `value` (of option `opt`, 0 = unset) must divide `dim`, named
// `what` ("the model's ffn size"). Throws kt::Error "--opt: 48 does not divide ...".
void check_divides(const std::string& opt, int value, int dim, const std::string& what);
// `value` of option `opt` must be below `limit` (e.g. a layer index and the layer count).
void check_below(const std::string& opt, int value, int limit, const std::string& what);

}  // namespace kt::cli
