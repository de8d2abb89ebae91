// The interface of a quantization method. Each method is one file under quant/methods/ and one
// line in the registry (quant/methods.cc, which also lists its options). quantize_model
// (quant/pipeline.cc) is the streamed loop that drives it:
//   prepare (global, once: e.g. KurTail learns R1 and per-layer R2)
//   per layer: load -> fold norms / fuse R1, R2 as the recipe says -> layer statistics (if the
//   method needs them) -> transform_layer -> online input Hadamards, R4 -> weights (RTN or GPTQ)
//   -> propagate the calibration activations.
// The rotations a method implies (R1-R4, online input Hadamards) are recipe flags set from the
// registry line (Recipe::set_method); the loop applies them, so QuaRot itself has no code.
#pragma once
#include <memory>
#include <vector>

#include "io/text.h"
#include "model/model.h"
#include "quant/online_plan.h"
#include "quant/options.h"
#include "quant/recipe.h"
#include "transform/rotation.h"

namespace kt {

struct QuantizeOptions;
struct QuantizeReport;

// What a method needs from the run.
struct Needs {
  bool calibration = false;  // calibration windows even with RTN weights (KurTail's capture)
  bool layer_stats = false;  // per-layer channel statistics of the linear inputs (implies calibration)
  int sample_rows = 0;       // with layer_stats: also the first N rows of each linear-input site
  bool fold_norms = false;   // fold the RMSNorm weights into the linears even without rotations
  bool whole_globals = false;  // prepare() reads the embedding and head whole (end-to-end training)
};

// Statistics of one layer's linear-input sites (AttnIn, OIn, MlpIn, DownIn), captured on the
// calibration activations after the recipe's fused rotations and before the layer's own transforms.
struct LayerStats {
  std::vector<double> absmax[kNumSites];  // per channel
  std::vector<float> sample[kNumSites];   // first Needs::sample_rows rows, row-major
};

// R1 and R2 as the loop fuses them: Hadamards built from the recipe's seed; prepare() may
// replace them (KurTail's learned R1, one learned R2 per layer).
struct Rotations {
  Rotation r1, r2;
  std::vector<Rotation> r2_layers;  // when set, layer l fuses r2_layers[l] instead of r2
  // The online R3 and R4 (one per down_proj input width) the model will run with, fixed before
  // prepare() (SpinQuant learns R1/R2 through them).
  Rotation r3;
  std::vector<Rotation> r4;
};

// The recipe's online part as the pipeline builds it: methods add their per-layer site
// transforms and CrossQuant column maxima through it. (One name, so its type can change.)
using OnlineBuilder = OnlinePlanBuilder;

// What a method sees of the run.
struct MethodContext {
  Recipe& recipe;  // methods record their per-layer tensors in recipe.tensors
  const ModelSpec& spec;
  const QuantizeOptions& opt;
  QuantizeReport& report;
  OnlineBuilder* online = nullptr;  // set before the first transform_layer
};

class Method {
 public:
  virtual ~Method() = default;
  virtual Needs needs() const { return {}; }
  // Why the method cannot run on a model of this spec ("" if it can); checked before anything runs.
  virtual std::string unsupported(const ModelSpec& s) const {
    (void)s;
    return "";
  }
  // Once, before any layer is transformed and before R1 touches the embeddings (m is the
  // source model; calib is empty unless needs() asks for calibration).
  virtual void prepare(Model& m, const Windows& calib, Rotations& rot, MethodContext& ctx) {
    (void)m, (void)calib, (void)rot, (void)ctx;
  }
  // One layer: w has its norms folded and R1/R2 fused as the recipe says; st is filled when
  // needs().layer_stats.
  virtual void transform_layer(int l, LayerWeights& w, const LayerStats& st, MethodContext& ctx) {
    (void)l, (void)w, (void)st, (void)ctx;
  }
};

}  // namespace kt
