// Llama-family models in llama.cpp's GGUF: read (spec from the `{arch}.*` keys, tensors under
// their HF names, converted to fp32 one at a time) and written (F32 or F16, llama.cpp metadata
// and tokenizer), so `llama-quantize` can take a model kurtail transformed.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "io/gguf.h"
#include "core/tensor.h"
#include "core/arch.h"
#include "core/spec.h"

namespace kt {

class Model;

// llama.cpp's longrope factor tensors (phi3), global.
constexpr const char* kGgufRopeFactorsLong = "rope_factors_long.weight";
constexpr const char* kGgufRopeFactorsShort = "rope_factors_short.weight";

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
  bool norms_stored_as_multipliers() const override { return true; }
  const GGUFFile& file() const { return *file_; }

 private:
  std::shared_ptr<const GGUFFile> file_;
  std::map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> unreadable_;  // HF name -> message
  void add_expert_views(const GGUFTensorInfo& t, const TensorRow& row, TensorInfo stack, const ModelSpec& spec);
};

}  // namespace kt
