// JSON read from disk, never trusted. (Include only from .cc files that use nlohmann/json
// already: the header is heavy.)
//  - parse_json: nesting capped at parse time (nlohmann's parser is iterative, but dump() and
//    any recursive walk of a deep value overflow the stack), duplicate object keys refused
//    (nlohmann keeps the last silently; the file is ambiguous), and the number of values
//    capped so a small file cannot expand into a huge tree.
//  - json_number: nlohmann's get<int>() static_casts whatever number is there, which is
//    undefined behaviour for a double out of range (`"bits": 1e300`) and silently wraps an
//    out-of-range integer; this checks the value first and fails naming the file and key.
//  - json_type_name: what to say about an unexpected value; never dump() an untrusted value
//    into a message (it may be huge or deep).
#pragma once
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "util/error.h"

namespace kt {

// Deeper than any real config, tokenizer, recipe or header (tokenizer.json's Sequence of
// pre-tokenizers nests 5-6 levels).
inline constexpr int kMaxJsonDepth = 64;

inline const char* json_type_name(const nlohmann::json& v) { return v.type_name(); }

// `what` prefixes the parse error ("not valid JSON", "safetensors header is not valid JSON").
inline nlohmann::json parse_json(std::string_view text, const std::string& path, size_t max_values = SIZE_MAX,
                                 const std::string& what = "not valid JSON") {
  using json = nlohmann::json;
  std::vector<std::unordered_set<std::string>> keys;  // one set per open object; arrays push an empty marker
  size_t values = 0;
  auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if ((int)keys.size() >= kMaxJsonDepth)
          fail(path, "JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second)
          fail(path, "duplicate JSON key " + quote(parsed.get<std::string>()));
        break;
      case json::parse_event_t::value:
        break;
    }
    if (ev != json::parse_event_t::key && ev != json::parse_event_t::object_end &&
        ev != json::parse_event_t::array_end && ++values > max_values)
      fail(path, "JSON has more than " + std::to_string(max_values) + " values, more than this file can need");
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    fail(path, what + ": " + e.what());
  }
}

template <class T>
T json_number(const nlohmann::json& v, const std::string& where, const std::string& key) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  if (!v.is_number()) fail(where, "'" + key + "' must be a number, got " + json_type_name(v));
  if constexpr (std::is_floating_point_v<T>) {
    const double d = v.get<double>();
    if (std::abs(d) > (double)std::numeric_limits<T>::max()) fail(where, "'" + key + "' is out of range");
    return (T)d;
  } else {
    using L = std::numeric_limits<T>;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > (uint64_t)L::max()) fail(where, "'" + key + "' = " + std::to_string(u) + " is out of range");
      return (T)u;
    }
    if (v.is_number_integer()) {
      const int64_t i = v.get<int64_t>();
      if ((L::is_signed && i < (int64_t)L::min()) || (!L::is_signed && i < 0) ||
          (uint64_t)std::max<int64_t>(i, 0) > (uint64_t)L::max())
        fail(where, "'" + key + "' = " + std::to_string(i) + " is out of range");
      return (T)i;
    }
    const double d = v.get<double>();
    // 2^63 / 2^64 bounds are exact in double; smaller types compare exactly too.
    const double lo = L::is_signed ? -std::ldexp(1.0, L::digits) : 0.0, hi = std::ldexp(1.0, L::digits);
    if (!(d >= lo && d < hi) || d != std::trunc(d)) fail(where, "'" + key + "' must be an integer in range");
    return (T)d;
  }
}

// obj[key] if present and not null, else dflt.
template <class T>
T json_number_or(const nlohmann::json& obj, const char* key, T dflt, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) return dflt;
  return json_number<T>(obj[key], where, key);
}

}  // namespace kt
