// The one place a linear's fp32 grid weights (w = code * qscale, written by the weight
// quantizers) become packed integer codes: saving a packed model (export/quantized_model.cc,
// NAME.qweight) and packing for real execution (runtime/real_model.cc) both call pack_linear,
// so the bytes on disk and the bytes the kernels run are the same function of the weights.
// The inverse is dequantize_packed (kernels/packed.h), which unpack_linear applies to a linear.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "kernels/wtype.h"

namespace kt {

struct Linear;
struct PackedWeight;

// The packed type of `l`'s recorded grid, or none when it has no packed form: no scales, bits
// without a packed table row, or a group size that is not a multiple of kStepK.
std::optional<WType> linear_wtype(const Linear& l);

// `l` packed: its own `packed` when it already has one (loaded packed), else its codes
// (grid_code of w and qscale) packed; null when linear_wtype(l) is none. Fails with
// fail(file, what + ": weights are not on their recorded integer grid") when any weight is off
// the grid or out of the type's range.
std::shared_ptr<const PackedWeight> pack_linear(const Linear& l, const std::string& file, const std::string& what);

// A linear held only packed (codes and scales, no fp32 w) gets its grid values back in w
// (code x scale, exactly the weights it was packed from) and drops the packed form; returns
// whether it did (false: not packed, or w already there).
bool unpack_linear(Linear& l);

}  // namespace kt
