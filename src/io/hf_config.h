// config.json of an HF checkpoint -> ModelSpec.
#pragma once
#include <string>

#include "core/spec.h"

namespace kt {

// Reads config.json of an HF checkpoint directory (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM). Unsupported architectures or rope scaling are rejected clearly.
ModelSpec read_hf_config(const std::string& config_path);
// The config.json kurtail writes for a spec (exact round trip through read_hf_config).
std::string spec_to_hf_config(const ModelSpec& s);

}  // namespace kt
