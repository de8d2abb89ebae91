// A recipe records everything needed to re-evaluate a transformed, fake-quantized model:
// the method, which rotations were fused or run online, and every quantizer.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "model/forward.h"
#include "core/quantizer.h"
#include "transform/rotation.h"
#include "transform/site_transform.h"

namespace kt {

// KurTail settings (every inferred choice of the method is one of these; see transform/kurtail.h).
// Their defaults, recipe.json keys and flags are declared once, in quant/methods/kurtail.cc.
struct KurtailSettings {
  double target;  // kurtosis of a uniform distribution: 1.8
  bool squared;   // loss (kurt - target)^2; false: plain mean kurtosis
  int budget;     // captured token rows per layer and site
  int iters;
  double lr;
  double momentum;
  bool learn_r1, learn_r2;
  int exact_up_to;  // CayleyOptions::exact_up_to
};

// SpinQuant settings (train/spinquant.h); declared once in quant/methods/spinquant.cc.
struct SpinquantSettings {
  int iters;
  double lr;
  int batch;          // windows per step; 0: one pass over the calibration in `iters` steps
  double momentum;
  bool gptq_fp;       // with --weights gptq: learn with full-precision weights (W16A4KV4), else RTN
  bool learn_r1, learn_r2;
};

struct Recipe {
  int version = 1;
  // rtn | quarot | kurtail | spinquant | smoothquant | smoothrot (QuaRot + down_proj smoothing before R4) |
  // smoothrot-all (smoothing + online Hadamard before every linear input) | duquant | crossquant
  std::string method = "rtn";
  std::string weight_algo = "rtn"; // rtn | gptq
  QuantSpec w, a, k, v;            // weights, linear inputs, K cache, V cache
  bool quant_lm_head = false;      // lm_head weight and input stay fp by default (as QuaRot)
  // With quant_lm_head: the bits of lm_head's weight and input quantizers (2..8; 0: those of `w`
  // and `a`). llama.cpp keeps its output matrix at 6-8 bits (Q6_K / Q8_0) while the layers go
  // to 4: this is that choice, and with 8 the packed head runs the W8A8 integer kernels.
  int lm_head_bits = 0;
  // rotations: fused R1 (residual) and R2 (per head V/O); online R3 (Q/K per head) and R4 (down input)
  bool r1 = false, r2 = false, r3 = false, r4 = false;
  bool r1_random_signs = true;
  uint64_t seed = 0;
  // online rotations are rebuilt from (size, kind, seed) at load time
  std::string r3_kind = "hadamard", r4_kind = "hadamard";
  uint64_t r3_seed = 0, r4_seed = 0;
  // R4 as a block-diagonal Sylvester Hadamard of this block size (a power of two dividing every
  // down_proj input width; vLLM's fast `hadamard` transform, docs/FORMAT.md); 0: the full
  // Hadamard of the width (Kronecker with a Paley factor where the width is no power of two).
  // Declared with its flag --r4-block in quant/pipeline.cc (recipe.json "r4": {"block": N}).
  int r4_block;
  // The options of the weight algorithm and the methods. Stored here (the loader, validation and
  // the runtime read them), declared once with their defaults, recipe.json keys and flags by
  // their owners: gptq.* in quant/gptq.cc, the rest in quant/methods/<method>.cc. Recipe()
  // sets the defaults.
  double percdamp;  // GPTQ settings (recorded for reference)
  int gptq_block;
  bool act_order;
  bool gptq_f64;  // GPTQ's arithmetic: double (true) or float, the default (GptqOptions::f64)
  KurtailSettings kurtail;
  SpinquantSettings spinquant;
  double smooth_alpha;       // SmoothQuant / smooth-then-rotate migration strength
  bool online_had_inputs;    // online hidden-size Hadamard at the q/k/v and gate/up inputs
  double dq_alpha;           // DuQuant
  int dq_block, dq_steps;
  bool dq_permute;
  double cq_alpha;           // CrossQuant exponent
  bool crossquant;
  // Per-layer online data (site transforms "site.L.SITE.{smooth,rot_a,rot_b,perm}", CrossQuant
  // column maxima "cq.L.SITE.colmax"); saved in model.safetensors under the prefix "kurtail.".
  std::map<std::string, Tensor> tensors;
  // calibration (recorded for reference)
  std::string calib;
  int nsamples = 0, seqlen = 0;

  Recipe();  // every option at its declared default

  // Sets `method` and the rotations it implies (quarot/kurtail/smoothrot: R1-R4; smoothrot-all:
  // online input Hadamards + R2-R4; the others: none). Unknown names are an error listing them.
  void set_method(const std::string& m);
  static const char* method_list();
  std::string to_json() const;
  static Recipe from_json(const std::string& text, const std::string& path);
  // Presets: "W4A4KV4", "W8A8KV8", "W4A16KV16", ... sets bits with the QuaRot defaults
  // (weights sym per-channel + MSE clip; activations sym per-token clip 0.9; KV asym
  // per head (group = head_dim) clip 0.95).
  void set_bits(int wbits, int abits, int kvbits, int head_dim);
  // The quantizers of lm_head's weight and input (quant_lm_head): w and a with lm_head_bits.
  QuantSpec lm_head_w() const;
  QuantSpec lm_head_a() const;
};

// A learned R1 (KurTail) of a model with post-norms (Gemma 2), which runs online after them:
// [hidden, hidden]. A seeded Hadamard R1 is rebuilt from `seed` instead.
constexpr const char* kOnlineR1Tensor = "r1.online";
// True when the model's R1 runs online after the post-norms (recipe r1 and a post-norm family).
bool r1_runs_online(const Recipe& r, const ModelSpec& s);
// The R4 of a down_proj input of width n as the recipe builds it: the block-diagonal Sylvester
// Hadamard when r4_block > 0, else Rotation::hadamard(n, false, r4_seed). Fails naming the
// sizes when the block does not divide n.
Rotation r4_rotation(const Recipe& r, int n);

// Name of a per-layer recipe tensor, e.g. site_tensor_name(3, Site::DownIn, "smooth").
std::string site_tensor_name(const std::string& kind, int layer, Site site, const std::string& what);

}  // namespace kt
