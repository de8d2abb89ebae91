// A quantized model (the directory `kurtail quantize` writes, docs/FORMAT.md) is input like any
// other: it is checked against its recipe and the model spec when it loads, before any of its
// numbers is used. Every load path comes through here: open_model (and open_session, which
// keeps the recipe it returns: validated once per open) runs load_validated_recipe on a
// directory with a recipe.json before it loads a tensor (eval with fake quantization or the
// integer kernels, run, generate, bench, analyze, info, export-gguf, quantize, the fuzz target
// fuzz_qmodel), and Model::load_layer calls check_linear_quant / check_on_grid for every layer it
// loads (also for a directory without recipe.json, and for streamed layers). Cost on
// tinyllama-8m: 1-6 ms per load; the one O(b^3) check is a b x b SYRK per stored rotation.
// Each failure is one line naming the file (recipe.json or model.safetensors) and the entry,
// names quoted: `DIR/model.safetensors: tensor 'kurtail.site.0.o_in.rot_a' is not orthogonal (...)`.
//
// recipe.json (Recipe::from_json parses with types, validate_recipe checks values):
//  - JSON: nesting, duplicate keys, value count (parse_json); the top level and every section
//    are objects; every field has its type (boolean, string, number, integer in range).
//  - unknown keys are refused at every level, naming the key: recipe.json is kurtail's own
//    versioned output, so an unknown key is a typo or an edit whose intent would be silently
//    ignored (`"clip_ratoi": 0.5` would evaluate with the default clip), or a newer writer
//    whose meaning this reader cannot honour. Optional keys that older writers did not emit
//    keep their defaults.
//  - format "kurtail-recipe", version 1; method one of Recipe::method_list(); weight_algo rtn|gptq.
//  - each quantizer (weights, activations, k_cache, v_cache): bits in {2..8, 16 (off)};
//    granularity tensor|row|group; group > 0 for group, 0 otherwise; clip_ratio finite in
//    (0, 1]; mse_grid in 1..10000, mse_maxshrink in [0, 1], mse_norm finite in (0, 16];
//    scale_dtype f32|f16.
//  - rotations: r1..r4 only where the method has them (--no-rN only switches them off);
//    r3_kind/r4_kind hadamard|random_orthogonal; seeds are unsigned 64-bit integers.
//  - gptq: percdamp finite in [0, 1], block > 0. smoothing.alpha, duquant.alpha,
//    crossquant.alpha finite in [0, 1]; duquant.block in 1..65536, steps in 0..100000;
//    smoothing.online_hadamard_inputs exactly for smoothrot-all, crossquant.enabled exactly
//    for crossquant; a "kurtail" section only for method kurtail: target finite in [1, 1000],
//    budget >= 1, iters >= 0, lr finite > 0, momentum finite in [0, 1).
//  - calibration: nsamples >= 0, seqlen >= 0; tensors: an array of distinct strings.
// Against the model spec (validate_quantized_model):
//  - every group size divides each dimension it groups: weights hidden, q_dim and ffn (the
//    inputs of the linears), activations the same (hidden, q_dim, ffn), K/V cache kv_dim;
//    calibration seqlen <= max_position_embeddings.
//  - r4.block: 0, or (with R4 only) a power of two dividing every down_proj input width; then
//    r4_kind is hadamard.
//  - R3/R4 kind and seed are what the writer derives: kind of Rotation::hadamard(head_dim /
//    ffn) (random_orthogonal where no Hadamard of that order exists), seed = rotations.seed + 3 / + 4.
// model.safetensors:
//  - __metadata__ kurtail_format is fakequant-1 or packed-1 and kurtail_method is the recipe's.
//  - every tensor is one a quantized model has (embeddings, norms, lm_head, per-layer norms and
//    linears as .weight/.bias/.qweight/.qscale/.qbits, kurtail.*); anything else is refused.
//  - "kurtail.*" online tensors: exactly the set the recipe needs (duquant: per layer and site
//    site.L.SITE.smooth [n], rot_a/rot_b [b, b] with b = duquant_block_size(n, duquant.block)
//    when b >= 2, perm [n] when also duquant.permute and n/b > 1; crossquant: cq.L.SITE.colmax
//    [n]; other methods: none), equal to recipe.json "tensors"; F32; exact shapes; finite;
//    smoothing scales > 0; column maxima >= 0 (a channel that was 0 on every calibration row
//    has maximum 0; the quantizer clamps it); rotations orthogonal: max |R^T R - I| <= 1e-4,
//    accumulated in float64 (one b x b product; DuQuant's are ~1e-7 off); permutations hold
//    each of 0..n-1 exactly once as an exact integer.
//  - per linear P (check_linear_quant): P.qscale is present exactly when the recipe's weight
//    quantizer records scales (symmetric, 4, 6 or 8 bits, per row or per group); F32, or F16
//    exactly when weights.scale_dtype is f16; shape [out, G] with G = 1 per row, in/group per
//    group; every scale finite and > 0 (the quantizer records 1 for an all-zero group and
//    never 0); P.qbits F32 [1], 4, 6 or 8, equal to weights.bits; P.qweight (packed-1 only) U8
//    1-D with exactly (Np/16)*(Kp/8)*(64, 96 or 128) bytes, present exactly where the writer
//    packs (4/6/8 bits, group a multiple of 8), and never together with P.weight; P.qbits/P.qweight
//    without P.qscale refused; a bias only where config.json has one.
//  - fakequant-1 weights (check_on_grid, as each layer loads): w / scale is an integer
//    (|w/s - round(w/s)| <= 1e-3) inside the signed range of qbits.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "core/tensor.h"
#include "core/spec.h"
#include "model/linear_quant.h"
#include "model/model.h"
#include "quant/recipe.h"

namespace kt {

// Bit widths a recipe quantizer may have: 2..8, or 16 (not quantized).
bool quant_bits_supported(int bits);

// Range checks of a parsed recipe that need no model (Recipe::from_json calls it);
// `path` names recipe.json in the message.
void validate_recipe(const Recipe& r, const std::string& path);

// Reads DIR/recipe.json and the kurtail.* tensors of DIR's safetensors, checks all of the
// above against `s`, and returns the recipe with its tensors.
Recipe load_validated_recipe(const std::string& dir, const ModelSpec& s);

// A rotated model with post-norms (Gemma 2) runs R1 online after them (transform/fuse.h): its
// recipe's R1 (rebuilt from the seed, or the learned kurtail.r1.online tensor, validated)
// goes onto every layer. Nothing for other models. open_model calls it.
void attach_online_r1(Model& m, const Recipe& r);

// Model::open for every path a user names (the CLI, the runtime loader, the fuzz target): a
// quantized model directory (one with recipe.json) is validated whole against its recipe
// before any tensor is used. (Model::open itself knows no recipes: it sits a layer below.)
std::unique_ptr<Model> open_model(const std::string& path, int resident = -1, const std::string& tokenizer_path = "");
// The same, also handing back the validated recipe (nullopt for a model without recipe.json),
// so callers that need it do not validate the directory a second time.
// defer_globals: Model::globals_deferred (a streamed quantization).
std::unique_ptr<Model> open_model(const std::string& path, int resident, const std::string& tokenizer_path,
                                  std::optional<Recipe>* recipe, bool defer_globals = false);


}  // namespace kt
