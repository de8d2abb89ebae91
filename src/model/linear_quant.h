// The integer-grid tensors of one linear in a quantized model (.qscale, .qbits, .qweight),
// checked as the layer loads (never trusted: docs/ERRORS.md, "A quantized model is validated").
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace kt {

// The quantization tensors of one linear `name` ("model.layers.L.self_attn.q_proj") of shape
// [out, in]: returns its scales and bits (empty / 0 when it has none). Refuses a .qbits or
// .qweight without .qscale, bad dtypes, shapes, byte counts and non-finite or non-positive
// scales.
struct LinearQuant {
  Tensor qscale;
  int qbits = 0;
};
LinearQuant check_linear_quant(const TensorSource& src, const std::string& name, int64_t out, int64_t in);

// Fake-quantized weights w [out, in] lie on the integer grid of their scales.
void check_on_grid(const Tensor& w, const LinearQuant& q, const std::string& file, const std::string& name);

}  // namespace kt
