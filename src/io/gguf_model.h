// Llama-family models in llama.cpp's GGUF: read (spec from the `{arch}.*` keys, tensors under
// their HF names, converted to fp32 one at a time) and written (F32 or F16, llama.cpp metadata
// and tokenizer), so `llama-quantize` can take a model kurtail transformed.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "io/tensor.h"
#include "model/spec.h"

namespace kt {

class Model;

// True if the file starts with the GGUF magic.
bool is_gguf_file(const std::string& path);

// Architecture from general.architecture (llama, qwen2; Mistral GGUFs say "llama").
ModelSpec gguf_model_spec(const GGUFFile& f);

// The file's tensors under HF names ([out, in], q/k rows back in HF order for "llama").
// Tensors of types kurtail does not read (K-quants etc.) are listed; loading one fails naming it.
class GGUFSource : public TensorSource {
 public:
  GGUFSource(std::shared_ptr<const GGUFFile> f, const ModelSpec& spec);
  bool has(const std::string& name) const override { return infos_.count(name) > 0; }
  const TensorInfo& info(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return file_->path(); }
  const GGUFFile& file() const { return *file_; }

 private:
  std::shared_ptr<const GGUFFile> file_;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> unreadable_;  // HF name -> message
};

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
