// A linear map applied to one row of activations at a time, so that callers can fuse it with
// whatever consumes the row next (activation quantization, the K/V cache write) while the row
// is in a small per-thread buffer.
#pragma once
#include <cstdint>

namespace kt {

struct RowTransform {
  virtual ~RowTransform() = default;
  virtual int64_t size() const = 0;            // row length it applies to
  virtual void apply_row(float* row) const = 0;  // in place
};

}  // namespace kt
