// The quantized-model directory kurtail quantize writes (docs/FORMAT.md).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "model/model.h"
#include "quant/pipeline.h"
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
// Writes a quantized model as its parts become final, for `kurtail quantize` on a model larger
// than its memory budget: the quantization never holds more than one layer. Constructed before the
// work (OUT checked as check_output_dir does, its temp directory made); the globals (embedding,
// head) go to model-00001-of-N.safetensors, layer l to shard l + 2, the final norm and the
// recipe's tensors not yet written to shard N, then model.safetensors.index.json, config, recipe
// and tokenizer files, and finish() publishes OUT whole. Each shard carries the format and method
// in its __metadata__, as model.safetensors does. Destroyed unfinished (an error, Ctrl-C), it
// leaves nothing at OUT.
class OutputDir;
class QuantizedTensorSet;
class QuantizedModelWriter : public QuantizedSink {
 public:
  QuantizedModelWriter(const Model& m, std::string out_dir, bool force, bool packed,
                       const std::vector<std::string>& inputs = {});
  ~QuantizedModelWriter() override;
  void globals(const Model& m, const Recipe& r) override;
  void layer(int l, const LayerWeights& w, const Model& m, const Recipe& r) override;
  void finish(const Model& m, const Recipe& r);

 private:
  std::string shard_name(int i) const;
  void write_set(const Model& m, const Recipe& r, int shard, bool last,
                 const std::function<void(QuantizedTensorSet&)>& add);
  std::string out_;
  bool packed_;
  int shards_;
  std::unique_ptr<OutputDir> dir_;
  bool globals_done_ = false, tied_ = false;
  int next_layer_ = 0;
  std::set<std::string> written_recipe_;
  std::map<std::string, std::string> weight_map_;
  uint64_t total_bytes_ = 0;
};
// "model-00002-of-00034.safetensors": a shard name QuantizedModelWriter writes.
bool is_quantized_shard_name(const std::string& name);
// A directory kurtail quantize wrote: only regular files of the names it writes, and a
// recipe.json with kurtail's format marker.
bool is_kurtail_model_dir(const std::string& dir);

}  // namespace kt
