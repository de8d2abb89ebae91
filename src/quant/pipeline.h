// `kurtail quantize`: transform + quantize a model layer by layer.
//
// Data flow (layer-streamed): calibration windows -> embeddings (rotated by R1) -> for each
// layer: load it, fold norms, fuse R1/R2/R4, quantize its weights (RTN, or GPTQ on Hessians
// of the layer's real inputs, captured after the online rotations and after the previous
// layers were quantized), run the calibration activations through the quantized layer to
// get the next layer's inputs, keep the result. Only one source layer is materialised at a time.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/text.h"
#include "quant/gptq.h"
#include "quant/recipe.h"

namespace kt {

// Where a streamed quantization puts each part as it becomes final (kurtail quantize on a model
// larger than its memory budget; export/quantized_model.h writes them): the globals (embedding,
// head) when the layer loop starts, then every layer as it is done. The model keeps neither: its
// globals are freed and its layers left unpinned, so memory holds one layer at a time.
class QuantizedSink {
 public:
  virtual ~QuantizedSink() = default;
  virtual void globals(const Model& m, const Recipe& r) = 0;
  virtual void layer(int l, const LayerWeights& w, const Model& m, const Recipe& r) = 0;
};

// Whether the recipe's head quantizer works row by row (none, per channel or per group), so that
// a streamed run's deferred head (Model::globals_deferred) is quantized a block of rows at a time.
bool head_quant_by_rows(const Recipe& r);
// Rows [row0, row0 + n) of the head as the quantized model stores it: the model's head rows
// (Model::head_rows), quantized by the recipe's head quantizer with its scales recorded when the
// recipe quantizes the head: bit for bit the rows of the head quantized whole.
Linear head_block(const Model& m, const Recipe& r, int64_t row0, int64_t n);

struct QuantizeOptions {
  Recipe recipe;
  std::string calib_path;  // needed for GPTQ
  int nsamples = 128;
  int seqlen = 0;          // 0: min(2048, model max)
  uint64_t seed = 0;
  GptqOptions gptq;
  bool progress = true;
  QuantizedSink* sink = nullptr;  // null: the quantized layers stay in the model (set_layer)
};

struct QuantizeReport {
  double seconds = 0, peak_rss_mib = 0;
  // KurTail: mean per-token kurtosis of the R1 rows / R2 head rows at the Hadamard start and
  // after learning (R2 averaged over layers), learning time and steps
  double kt_r1_kurt_init = 0, kt_r1_kurt_final = 0, kt_r2_kurt_init = 0, kt_r2_kurt_final = 0;
  double kt_seconds = 0, kt_capture_seconds = 0;
  int kt_r1_steps = 0;
  int64_t kt_rows_r1 = 0;
  // SpinQuant: cross-entropy of the first calibration micro-batch before / after learning,
  // steps, windows per step, learning time, max |R R^T - I| of the learned rotations
  double sq_loss_init = 0, sq_loss_final = 0, sq_seconds = 0, sq_orthogonality_error = 0;
  int sq_steps = 0, sq_batch = 0;
  std::string sq_train_weights;
  // CPU seconds (all threads) of the method's prepare step: learning KurTail's or SpinQuant's rotations
  double prepare_cpu_seconds = 0;
  int nsamples = 0, seqlen = 0;
  // GPTQ on MoE: experts (summed over layers) no calibration token was routed to: quantized by RTN
  int experts_without_calibration = 0;
  // Wall seconds per step, summed over layers (load, fuse, stats, weights, hessians, gptq,
  // propagate, write) in the order they first ran; prepare: the method's learning step.
  std::vector<std::pair<std::string, double>> step_seconds;
  // The step that ended with the highest peak RSS so far (the process's high-water mark, read
  // as each step ends), and that peak: where a memory bound is set.
  std::string peak_step;
  double peak_step_rss_mib = 0;
  void add_step(const std::string& name, double s);
  std::string r1_kind, r2_kind, r3_kind, r4_kind;  // r4: "hadamard-block-64" with --r4-block 64
};

// Calibration windows: nsamples random (seeded) slices of seqlen tokens from the text, as
// GPTQ/QuaRot sample them. Fails clearly if the text is shorter than one window.
Windows calibration_windows(const Tokenizer& tok, const std::string& path, int nsamples, int seqlen, uint64_t seed);

// Transforms and fake-quantizes `m` in place; fills the recipe's online-rotation fields.
QuantizeReport quantize_model(Model& m, QuantizeOptions& opt);


}  // namespace kt
