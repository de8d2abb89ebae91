#include "cli/options.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "util/error.h"

namespace kt::cli {

namespace {

// Shortest text that reads back as x (0.9, not 0.90000000000000002; 100, not 1e+02).
std::string fmt_real(double x) {
  char buf[64];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, x);
  return ec == std::errc() ? std::string(buf, p) : std::to_string(x);
}

// Decimal integer only: CLI11 itself reads "010" as octal 8 and "-1" into a uint64 as 2^64-1.
bool parse_i64(const std::string& s, int64_t* out) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') b++;
  if (b == e) return false;
  auto [p, ec] = std::from_chars(b, e, *out, 10);
  return ec == std::errc() && p == e;
}

// Decimal or exponent notation; "nan"/"inf" parse here and are refused by the caller.
bool parse_real(const std::string& s, double* out) {
  const char* b = s.data();
  const char* e = b + s.size();
  if (b != e && *b == '+') b++;
  if (b == e) return false;
  auto [p, ec] = std::from_chars(b, e, *out, std::chars_format::general);
  if (ec == std::errc::result_out_of_range) {  // 1e999: report it as the infinity it is
    *out = (*b == '-') ? -INFINITY : INFINITY;
    return p == e;
  }
  return ec == std::errc() && p == e;
}

std::string int_range_text(int lo, int hi, bool zero_default) {
  if (zero_default && lo == 1) lo = 0;  // "0..N", not "0 or 1..N"
  return (zero_default && lo > 0 ? "0 or " : "") + std::to_string(lo) + ".." + std::to_string(hi);
}

std::string real_range_text(double lo, double hi, bool lo_open, bool hi_open) {
  return std::string(lo_open ? "(" : "[") + fmt_real(lo) + ", " + fmt_real(hi) + (hi_open ? ")" : "]");
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? sep : "") + v[i];
  return s;
}

CLI::Validator choice_validator(const std::vector<std::string>& choices, bool list) {
  const std::string desc = join(choices, "|");
  return CLI::Validator(
      [choices, list](std::string& s) -> std::string {
        std::vector<std::string> items = list ? split_list(s) : std::vector<std::string>{s};
        if (items.empty()) return "must not be empty (one of " + join(choices, ", ") + ")";
        for (const std::string& it : items) {
          bool ok = false;
          for (const std::string& c : choices) ok = ok || it == c;
          if (!ok) return quote(it, 64) + " is not one of " + join(choices, ", ");
        }
        return "";
      },
      list ? "list of " + desc : desc);
}

template <class F>
CLI::Option* add_real(CLI::App* c, const std::string& name, F& v, const std::string& desc, double lo, double hi,
                      bool lo_open, bool hi_open) {
  const std::string range = real_range_text(lo, hi, lo_open, hi_open);
  CLI::Validator val(
      [=](std::string& s) -> std::string {
        double x;
        if (!parse_real(s, &x)) return quote(s, 64) + " is not a number (allowed: " + range + ")";
        if (!std::isfinite(x)) return quote(s, 64) + " is not a finite number (allowed: " + range + ")";
        const bool below = lo_open ? !(x > lo) : !(x >= lo), above = hi_open ? !(x < hi) : !(x <= hi);
        if (below || above) return fmt_real(x) + " is out of range (allowed: " + range + ")";
        s = fmt_real(x);  // the string CLI11 converts is the value checked here
        return "";
      },
      range);
  return c->add_option(name, v, desc)->transform(val);
}

}  // namespace

std::vector<std::string> split_list(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t a = 0;
  while (a <= s.size()) {
    size_t b = s.find(sep, a);
    if (b == std::string::npos) b = s.size();
    std::string item = s.substr(a, b - a);
    size_t l = item.find_first_not_of(' '), r = item.find_last_not_of(' ');
    out.push_back(l == std::string::npos ? "" : item.substr(l, r - l + 1));
    a = b + 1;
  }
  if (out.size() == 1 && out[0].empty()) out.clear();
  return out;
}

CLI::Option* lm_head_bits_option(CLI::App* c, int& v) {
  return int_option(c, "--lm-head-bits", v,
                    "quantize lm_head's weights and input to this many bits (implies --quant-lm-head; 0 = --w/--a; "
                    "6 and 8 run the W6A6 / W8A8 kernels, as llama.cpp keeps its output matrix at 6-8 bits)",
                    kMinBits, kMaxBits, /*zero_default=*/true);
}

CLI::Option* k_dot_option(CLI::App* c, std::string& v) {
  return choice_option(c, "--k-dot", v,
                       "decode attention's K dot products on a 4-bit K/V cache: f32 (float query x codes) or q8 "
                       "(query quantized to int8 per 32 dims, integer dots as llama.cpp's q8_0; AVX-512 VNNI, heads "
                       "of 128 or 256 dims, f32 elsewhere)",
                       {"f32", "q8"})
      ->capture_default_str();
}

KDot k_dot_named(const std::string& v) { return v == "q8" ? KDot::Q8 : KDot::F32; }

CLI::Option* int_option(CLI::App* c, const std::string& name, int& v, const std::string& desc, int lo, int hi,
                        bool zero_default) {
  const std::string range = int_range_text(lo, hi, zero_default);
  CLI::Validator val(
      [=](std::string& s) -> std::string {
        int64_t x;
        if (!parse_i64(s, &x)) return quote(s, 64) + " is not an integer (allowed: " + range + ")";
        if (!(zero_default && x == 0) && (x < lo || x > hi))
          return std::to_string(x) + " is out of range (allowed: " + range + ")";
        s = std::to_string(x);
        return "";
      },
      range);
  return c->add_option(name, v, desc)->transform(val);
}

CLI::Option* int_list_option(CLI::App* c, const std::string& name, std::vector<int>& v, const std::string& desc,
                             int lo, int hi) {
  const std::string range = int_range_text(lo, hi, false);
  auto parse = [=](const std::string& s, std::vector<int>* out) -> std::string {
    const std::vector<std::string> items = split_list(s);
    if (items.empty()) return "an empty list (allowed: comma-separated integers " + range + ")";
    for (const std::string& it : items) {
      int64_t x;
      if (!parse_i64(it, &x)) return quote(it, 64) + " is not an integer (allowed: " + range + ")";
      if (x < lo || x > hi) return std::to_string(x) + " is out of range (allowed: " + range + ")";
      if (out) out->push_back((int)x);
    }
    return "";
  };
  return c
      ->add_option_function<std::string>(
          name,
          [&v, parse](const std::string& s) {
            v.clear();
            parse(s, &v);
          },
          desc)
      ->check(CLI::Validator([parse](std::string& s) { return parse(s, nullptr); }, "LIST"));
}

CLI::Option* u64_option(CLI::App* c, const std::string& name, uint64_t& v, const std::string& desc) {
  CLI::Validator val(
      [](std::string& s) -> std::string {
        const char* b = s.data();
        const char* e = b + s.size();
        uint64_t x;
        auto [p, ec] = std::from_chars(b, e, x, 10);
        if (b == e || ec != std::errc() || p != e)
          return quote(s, 64) + " is not an integer in 0..18446744073709551615";
        s = std::to_string(x);
        return "";
      },
      "0..2^64-1");
  return c->add_option(name, v, desc)->transform(val);
}

CLI::Option* real_option(CLI::App* c, const std::string& name, double& v, const std::string& desc, double lo,
                         double hi, bool lo_open, bool hi_open) {
  return add_real(c, name, v, desc, lo, hi, lo_open, hi_open);
}
CLI::Option* real_option(CLI::App* c, const std::string& name, float& v, const std::string& desc, double lo,
                         double hi, bool lo_open, bool hi_open) {
  return add_real(c, name, v, desc, lo, hi, lo_open, hi_open);
}

CLI::Option* bits_option(CLI::App* c, const std::string& name, int& v, const std::string& desc) {
  const std::string range = "2..8 or 16";
  CLI::Validator val(
      [=](std::string& s) -> std::string {
        int64_t x;
        if (!parse_i64(s, &x)) return quote(s, 64) + " is not an integer (allowed: " + range + ")";
        if (!((x >= kMinBits && x <= kMaxBits) || x == kOffBits))
          return std::to_string(x) + " is out of range (allowed: " + range + ")";
        s = std::to_string(x);
        return "";
      },
      range);
  return c->add_option(name, v, desc)->transform(val);
}

CLI::Option* choice_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc,
                           const std::vector<std::string>& choices) {
  return c->add_option(name, v, desc)->check(choice_validator(choices, false));
}
CLI::Option* choice_option(CLI::App* c, const std::string& name, std::vector<std::string>& v,
                           const std::string& desc, const std::vector<std::string>& choices) {
  return c->add_option(name, v, desc)->check(choice_validator(choices, false));
}
CLI::Option* choice_list_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc,
                                const std::vector<std::string>& choices) {
  return c->add_option(name, v, desc)->check(choice_validator(choices, true));
}

CLI::Option* path_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc) {
  return c->add_option(name, v, desc)->check(CLI::Validator(
      [](std::string& s) -> std::string { return s.empty() ? "must not be empty" : ""; }, ""));
}

CLI::Option* text_option(CLI::App* c, const std::string& name, std::string& v, const std::string& desc) {
  return c->add_option(name, v, desc);
}

void check_divides(const std::string& opt, int value, int dim, const std::string& what) {
  if (value > 0 && dim % value != 0)
    fail(opt + ": " + std::to_string(value) + " does not divide " + what + " " + std::to_string(dim));
}

void check_below(const std::string& opt, int value, int limit, const std::string& what) {
  if (value >= limit)
    fail(opt + ": " + std::to_string(value) + " is out of range for " + what + " " + std::to_string(limit) +
         " (allowed: 0.." + std::to_string(limit - 1) + ")");
}

}  // namespace kt::cli
