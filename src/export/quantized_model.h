// The quantized-model directory kurtail quantize writes (docs/FORMAT.md).
#pragma once
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/recipe.h"

namespace kt {

// Writes OUT/{model.safetensors, config.json, recipe.json, tokenizer files} into a temp
// directory and renames it into place (no half-written output). Refuses to overwrite an
// existing OUT unless `force`.
// packed: quantized linears are written as packed integer weights (NAME.qweight U8 + NAME.qscale
// + NAME.qbits) instead of fp32 NAME.weight; see docs/FORMAT.md.
// The checks save_quantized would fail on, done before hours of work: OUT exists without
// `force`, or its temp directory cannot be created (missing/unwritable parent, read-only fs).
// `inputs`: paths the run read besides the model's own (calibration text...): OUT must not
// contain them. --force replaces only a directory is_kurtail_model_dir() recognises.
void check_output_dir(const Model& m, const std::string& out_dir, bool force,
                      const std::vector<std::string>& inputs = {});
void save_quantized(const Model& m, const Recipe& r, const std::string& out_dir, bool force, bool packed = false,
                    const std::vector<std::string>& inputs = {});
// A directory kurtail quantize wrote: only regular files of the names it writes, and a
// recipe.json with kurtail's format marker.
bool is_kurtail_model_dir(const std::string& dir);

}  // namespace kt
