// llama.cpp GGUF output: a model (after fusable transforms) and a vocabulary-only file.
#pragma once
#include <string>
#include <vector>

#include "model/model.h"

namespace kt {

// Matrices as F32, F16, BF16 or Q8_0 (ggml's reference quantizer; rows not a multiple of 32
// stay F16).
enum class GGUFOutType { F32, F16, BF16, Q8_0 };

// Writes `m` (fp32 weights, any transforms already fused) as a llama.cpp GGUF, streamed layer
// by layer into PATH.tmp.<pid> and renamed into place. Needs a tokenizer that exports to GGUF.
// OUT is created exclusively and published atomically (util/output.h); with `force` an
// existing OUT is replaced only if is_kurtail_gguf() and it is none of `inputs` (nor the model).
void write_gguf(const Model& m, const std::string& path, GGUFOutType type, const std::string& name,
                bool force = false, const std::vector<std::string>& inputs = {});
// A GGUF kurtail wrote (it carries the kurtail.writer key).
bool is_kurtail_gguf(const std::string& path);
inline constexpr const char* kKurtailWriterKey = "kurtail.writer";

// A GGUF holding only the tokenizer (what a quantized directory made from a GGUF carries as
// tokenizer.gguf).
class Tokenizer;
void write_gguf_vocab(const Tokenizer& t, const std::string& path);

}  // namespace kt
