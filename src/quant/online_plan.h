// The online part of a recipe, compiled once: for every (layer, site) the row transforms that
// run on the activation (R3 per head, a DuQuant/SmoothQuant site transform, the online input
// Hadamard, R4), then the quantizer and where it runs (in this hook, inside the consuming
// integer linear, or in the K/V cache write). What runs where depends on what the execution
// provides (OnlineCaps), so it is decided here once and never changed afterwards: an OnlinePlan
// has no setters. It is the forward pass's Hooks, so model/forward needs no knowledge of recipes.
//
// Order at a site (the order the model was transformed in, quant/pipeline.cc):
//   R3 (Q, and K unless the cache applies it) -> site transform -> input Hadamard (attn_in,
//   mlp_in) -> R4 (down_in, unless the down_proj linears apply it) -> quantizer.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/forward.h"
#include "quant/recipe.h"
#include "transform/rotation.h"
#include "transform/site_transform.h"

namespace kt {

// What the execution does itself, so the plan leaves it out of the hook.
struct OnlineCaps {
  // false: transforms only, every activation stays fp32 (calibration, diagnostics).
  bool quantize_activations = true;
  // The linears run the integer kernels and quantize their own inputs (runtime/real_model).
  bool linears_quantize_inputs = false;
  // ... and every down_proj can rotate each input row by R4 right before quantizing it
  // (runtime fuse_online_rotations installs plan.r4_rows() there). Needs linears_quantize_inputs.
  bool down_linears_apply_r4 = false;
  // The packed lm_head (quant_lm_head) quantizes its own input like the layers' linears.
  bool head_quantizes_input = false;
  // The K/V cache quantizes K and V as they are written (KVCache with quantizers).
  bool cache_quantizes_kv = false;
  // ... and rotates each K head by R3 before quantizing it (Hooks::k_head_transform). Used only
  // when no site transform of K would have to run after R3.
  bool cache_applies_r3 = false;
};

// One row transform of a site, in the order it runs.
struct OnlineStep {
  enum class Kind { R3Heads, SiteTransform, InputHadamard, R4 };
  Kind kind;
  const Rotation* rotation = nullptr;   // R3 (applied per head), the input Hadamard (R4: by width)
  const SiteTransform* site = nullptr;  // DuQuant / SmoothQuant site transform
};

// Where a site's quantizer runs.
enum class QuantWhere {
  None,         // not quantized (queries, lm_head input by default, A16/KV16, transforms-only plans)
  Hook,         // fake quantization in the plan's hook (fp32 values on the grid)
  LinearInput,  // the consuming integer linears quantize their input rows
  CacheWrite,   // the quantized K/V cache quantizes K/V as it stores them
};
const char* quant_where_name(QuantWhere w);

struct SitePlan {
  std::vector<OnlineStep> steps;
  QuantWhere where = QuantWhere::None;
  QuantSpec quant;                       // the quantizer (meaningful unless where == None)
  const std::vector<float>* crossquant_colmax = nullptr;  // CrossQuant column maxima (hook only)
  double crossquant_alpha = 0;
};

class OnlinePlanBuilder;

class OnlinePlan : public Hooks {
 public:
  OnlinePlan(const OnlinePlan&) = delete;
  OnlinePlan& operator=(const OnlinePlan&) = delete;

  // Runs the site's steps and (where it is Hook) its quantizer on x [rows, cols].
  void apply(int layer, Site site, float* x, int64_t rows, int64_t cols) const;
  // Hooks: the same as apply (the interface is not const; the plan does not change).
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    apply(layer, site, x, rows, cols);
  }
  // R3 for K when the cache applies it (r3_in_kv_cache), else null.
  const RowTransform* k_head_transform() const override { return r3_in_kv_cache_ ? r3_rows_.get() : nullptr; }

  // The compiled plan of one site; layer n_layers is the lm_head input.
  const SitePlan& site(int layer, Site site) const;
  const OnlineCaps& caps() const { return caps_; }
  const ModelSpec& spec() const { return s_; }
  bool r4_in_down_linears() const { return r4_in_down_; }
  bool r3_in_kv_cache() const { return r3_in_kv_cache_; }
  bool cache_quantizes_kv() const { return caps_.cache_quantizes_kv; }
  // R4 of a down_proj input width (ModelSpec::down_widths) as the down_proj linears' per-row
  // pre-transform (null without R4, or for a width the model does not have).
  std::shared_ptr<const RowTransform> r4_rows(int width) const;
  bool has_site_transform(Site site) const;  // at any layer

 private:
  friend class OnlinePlanBuilder;
  friend std::shared_ptr<const OnlinePlan> plan_online(const Recipe&, const ModelSpec&, const OnlineCaps&);
  OnlinePlan(const Recipe& r, const ModelSpec& s, const OnlineCaps& caps);
  void compile(int layer, Site site);  // (re)builds sites_[layer][site] from the parts below
  void compile_all();

  Recipe r_;  // settings only: the per-layer tensors live in site_tf_ / cq_
  ModelSpec s_;
  OnlineCaps caps_;
  bool r4_in_down_ = false, r3_in_kv_cache_ = false;
  Rotation rin_;
  std::shared_ptr<const Rotation> r3_;
  std::shared_ptr<const RowTransform> r3_rows_;
  // R4 per down_proj input width (one for a dense MLP; MoE: the experts' and the shared expert's)
  std::vector<std::pair<int, std::shared_ptr<const Rotation>>> r4_;
  const Rotation& r4_of(int width) const;
  // [layer][site] (unique_ptr: SitePlan points into them, so they must not move)
  std::vector<std::array<std::unique_ptr<const SiteTransform>, kNumSites>> site_tf_;
  std::vector<std::array<std::unique_ptr<const std::vector<float>>, kNumSites>> cq_;
  std::vector<std::array<SitePlan, kNumSites>> sites_;  // [0, n_layers]
  std::array<SitePlan, kNumSites> outside_;              // any other layer: no per-layer parts
};

// Compiles the recipe (its settings and its per-layer "kurtail.*" tensors) for `caps`.
// Fails naming the tensor if a recipe tensor has an unknown name or an invalid shape.
std::shared_ptr<const OnlinePlan> plan_online(const Recipe& r, const ModelSpec& s, const OnlineCaps& caps = {});

// The plan while a model is being quantized: the pipeline adds each layer's site transforms
// and CrossQuant column maxima as it computes them, and runs the layer through the builder
// (transforms only: calibration activations stay fp32).
class OnlinePlanBuilder : public Hooks {
 public:
  OnlinePlanBuilder(const Recipe& r, const ModelSpec& s);
  void set_site_transform(int layer, Site site, SiteTransform t);
  void set_crossquant_colmax(int layer, Site site, std::vector<float> c);
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    plan_->apply(layer, site, x, rows, cols);
  }
  const RowTransform* k_head_transform() const override { return plan_->k_head_transform(); }
  const OnlinePlan& plan() const { return *plan_; }

 private:
  std::unique_ptr<OnlinePlan> plan_;
};

}  // namespace kt
