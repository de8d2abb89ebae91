// Numbers read from JSON files on disk. nlohmann's get<int>() static_casts whatever number is
// there, which is undefined behaviour for a double out of range (`"bits": 1e300`) and silently
// wraps an out-of-range integer; these check the value first and fail naming the file and key.
// (Include only from .cc files that use nlohmann/json already: the header is heavy.)
#pragma once
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "util/error.h"

namespace kt {

template <class T>
T json_number(const nlohmann::json& v, const std::string& where, const std::string& key) {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>);
  if (!v.is_number()) fail(where, "'" + key + "' must be a number, got " + v.dump().substr(0, 40));
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
