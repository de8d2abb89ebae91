// A compressed-tensors checkpoint (io/compressed_tensors.h) opened as a kurtail quantized model:
// the weights as read, and the recipe its quantization_config describes (weights, per-token
// activations, R4 from transform_config; nothing else runs online), so eval, run and every
// other command take it like a directory kurtail quantize wrote.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "io/compressed_tensors.h"
#include "model/model.h"
#include "quant/recipe.h"

namespace kt {

// The recipe of a read checkpoint: method quarot with only R4 (or rtn without R4), activation
// clip 1 (the format has no clip: vLLM quantizes with the absmax), K/V cache not quantized.
// A non-`hadamard` R4 matrix must be the Hadamard kurtail builds for that width (its Kronecker /
// Paley one): other matrices are refused, naming `path`.
Recipe recipe_for_compressed_tensors(const CtQuant& q, const ModelSpec& s, const std::string& path);

// Reads DIR as above (open_model calls it for a directory whose config.json says compressed-tensors).
std::unique_ptr<Model> open_compressed_tensors(const std::string& dir, const std::string& tokenizer_path,
                                               std::optional<Recipe>* recipe);

}  // namespace kt
