// `kurtail export --format compressed-tensors`: a quantized model as a Hugging Face checkpoint
// in compressed-tensors' pack-quantized format, which vLLM serves (docs/FORMAT.md
// "compressed-tensors"). R1/R2/smoothing/norm folding are already plain weights; R4 becomes a
// transform_config group vLLM applies online; nothing else online can be expressed.
#pragma once
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/recipe.h"

namespace kt {

struct CtExportOptions {
  // dtype of every floating tensor (embeddings, norms, lm_head, weight scales, transform
  // matrices) and config.json's torch_dtype: float16 | bfloat16 | float32
  std::string dtype = "float16";
  bool drop_r3 = false;  // export a recipe with R3 without it (R3 has no place vLLM runs)
  bool force = false;    // replace OUT if it is a directory this exporter wrote
};

// The refusals, one line naming `model_path` (what cannot be expressed, or a quantizer vLLM has
// no scheme for), made before anything is written; returns what the export leaves out or
// changes (dropped R3, the activation clip, the K/V cache quantizers, rounded scales), which
// the CLI prints and the output records in kurtail_export.json.
std::vector<std::string> check_ct_export(const Model& m, const Recipe& r, const CtExportOptions& o,
                                         const std::string& model_path);

// Writes OUT (config.json with quantization_config, model.safetensors, tokenizer files,
// generation_config.json, kurtail_export.json) into a temp directory and renames it into place.
void write_compressed_tensors(const Model& m, const Recipe& r, const std::string& out, const CtExportOptions& o,
                              const std::vector<std::string>& notes);

// A directory this exporter wrote (only its file names, and kurtail_export.json's marker).
bool is_kurtail_ct_dir(const std::string& dir);

// The compressed-tensors version whose format this writer follows (quantization_config.version).
inline constexpr const char* kCtVersion = "0.12.2";

}  // namespace kt
