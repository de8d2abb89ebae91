// What evaluation, generation, zero-shot scoring, `run` and `bench` execute: a model, the
// compiled online part of its recipe (null for an FP model) and the K/V cache it needs. One
// object instead of (model, hooks, K spec, V spec) passed separately and re-assembled with
// `kv_k.enabled() ? ... : ...` at every cache.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "model/forward.h"
#include "quant/online_plan.h"
#include "quant/recipe.h"

namespace kt {

class Session {
 public:
  Session() = default;
  // An FP model (no recipe): no hooks, fp32 K/V. Non-owning: `m` must outlive the session.
  // Implicit, so an FP model can be passed wherever a session is expected.
  Session(const Model& m);  // NOLINT(google-explicit-constructor)
  // An FP model the session owns.
  explicit Session(std::shared_ptr<const Model> m);
  // A quantized model with its recipe compiled for `caps`.
  Session(std::shared_ptr<const Model> m, const Recipe& r, const OnlineCaps& caps = {});
  // The same, non-owning (an in-memory model just quantized, tests): `m` must outlive the session.
  Session(const Model& m, const Recipe& r, const OnlineCaps& caps = {});
  // ... with a plan already compiled from `r` (the runtime compiles it before fusing it into the model).
  Session(std::shared_ptr<const Model> m, const Recipe& r, std::shared_ptr<const OnlinePlan> plan);

  const Model& model() const { return *model_; }
  const ModelSpec& spec() const { return model_->spec; }
  bool quantized() const { return recipe_ != nullptr; }
  const Recipe* recipe() const { return recipe_.get(); }  // null for an FP model
  const OnlinePlan* plan() const { return plan_.get(); }  // null for an FP model
  // What forward() gets at its hook points: the plan, an observer (observed()), or null.
  Hooks* hooks() const { return hooks_; }
  // K/V cache quantizers; enabled exactly when the plan leaves K/V quantization to the cache.
  const QuantSpec& kv_k() const { return kv_k_; }
  const QuantSpec& kv_v() const { return kv_v_; }
  bool quantizes_kv_cache() const { return kv_k_.enabled(); }

  // A cache for nseq sequences of up to max_len positions: quantized when the plan says so,
  // with the decode K dot products set_k_dot chose.
  KVCache new_cache(int nseq, int max_len) const;
  void set_k_dot(KDot k) { k_dot_ = k; }
  // The same, or null when K/V stay fp32 (callers that then attend over the chunk's own K/V).
  std::unique_ptr<KVCache> new_quantized_cache(int nseq, int max_len) const;

  // This session with its hook points going through `h` instead (statistics capture,
  // diagnostics); `h` is expected to call hooks() of this session itself where it should run.
  Session observed(Hooks* h) const;

 private:
  std::shared_ptr<const Model> model_;
  std::shared_ptr<const Recipe> recipe_;
  std::shared_ptr<const OnlinePlan> plan_;
  Hooks* hooks_ = nullptr;
  QuantSpec kv_k_, kv_v_;
  KDot k_dot_ = KDot::F32;
};

// A model as a user names it: an FP model, or a quantized directory whose recipe.json and
// tensors are validated once (quant/validate_model.h) and compiled for `caps` (default: fake
// quantization in the hooks, fp32 K/V cache).
Session open_session(const std::string& path, int resident = -1, const std::string& tokenizer_path = "",
                     const OnlineCaps& caps = {});

}  // namespace kt
