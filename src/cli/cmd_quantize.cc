// `kurtail quantize`: transform + fake-quantize a model and write it with its recipe.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "quant/validate_model.h"
#include "export/quantized_model.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "cli/recipe_flags.h"
#include "quant/methods.h"
#include "quant/pipeline.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace kt::cli {

namespace {

std::string fmt_seconds(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1fs", s);
  return b;
}

struct QArgs {
  std::string model, method = "quarot", weights = "rtn", calib, out, tokenizer, w_scale = "f32";
  int truncate = 0;
  int wbits = 4, abits = 4, kvbits = 4, nsamples = 128, seqlen = 0, w_group = 0, kv_group = 0, lm_head_bits = 0;
  uint64_t seed = 0;
  float a_clip = 0.9f, kv_clip = 0.95f;
  double memory_budget_gib = (double)kResidentFp32Bytes / (1 << 30);
  bool no_r1 = false, no_r2 = false, no_r3 = false, no_r4 = false, a_asym = false, kv_sym = false, no_w_mse = false,
       quant_lm_head = false, force = false, json = false, quiet = false, packed = false, fake = false;
  // The method and GPTQ options (declared in quant/, options.h): the flags land here.
  Recipe opts;
  std::unique_ptr<RecipeFlags> opt_flags;
} qa;

// Options whose valid values depend on the model: a group never spans two rows of a linear's
// input (or two heads of K/V), so it must divide every input size.
void check_model_dependent_options(const ModelSpec& s) {
  check_divides("--w-group", qa.w_group, s.hidden, "the model's hidden size");
  check_divides("--w-group", qa.w_group, s.q_dim(), "the model's attention output size (heads x head_dim)");
  check_divides("--w-group", qa.w_group, s.ffn, "the model's ffn (intermediate) size");
  check_divides("--kv-group", qa.kv_group, s.head_dim, "the model's head_dim");
  if (qa.seqlen > s.max_pos)
    fail("--seqlen: " + std::to_string(qa.seqlen) + " exceeds the model's maximum context of " + std::to_string(s.max_pos));
}

int run_quantize() {
  if (qa.out.empty()) fail("--out DIR is required");
  // streamed until the budget says otherwise, the embedding and head left in the checkpoint
  auto m = open_model(qa.model, /*resident=*/0, qa.tokenizer, nullptr, /*defer_globals=*/true);
  if (qa.truncate > m->spec.n_layers)
    fail("--truncate-layers: " + std::to_string(qa.truncate) + " exceeds the model's " +
         std::to_string(m->spec.n_layers) + " layers");
  if (qa.truncate > 0) m->truncate_layers(qa.truncate);
  check_model_dependent_options(m->spec);
  // A model that fits the budget in fp32 is held whole and written as one model.safetensors;
  // a larger one is streamed: one layer in memory, each written to its own shard when done.
  const bool stream = (double)m->fp32_bytes() > qa.memory_budget_gib * (1 << 30);
  if (!stream) {
    m->load_globals();
    m->set_resident(true);
  }
  QuantizeOptions o;
  qa.opt_flags->commit();
  o.recipe = qa.opts;  // the method and GPTQ options; everything else is set below
  Recipe& r = o.recipe;
  r.weight_algo = qa.weights;
  r.set_bits(qa.wbits, qa.abits, qa.kvbits, m->spec.head_dim);
  r.a.clip_ratio = qa.a_clip;
  r.a.symmetric = !qa.a_asym;
  r.k.clip_ratio = r.v.clip_ratio = qa.kv_clip;
  r.k.symmetric = r.v.symmetric = qa.kv_sym;
  if (qa.kv_group > 0) r.k.group = r.v.group = qa.kv_group;
  r.w.mse_search = !qa.no_w_mse;
  r.w.scale_f16 = qa.w_scale == "f16";
  if (qa.w_group > 0) {
    r.w.gran = Granularity::PerGroup;
    r.w.group = qa.w_group;
  }
  r.quant_lm_head = qa.quant_lm_head || qa.lm_head_bits > 0;  // --lm-head-bits implies --quant-lm-head
  r.lm_head_bits = qa.lm_head_bits;
  r.seed = qa.seed;
  r.set_method(qa.method);
  // --no-rN switch off rotations the method would use
  if (qa.no_r1) r.r1 = false;
  if (qa.no_r2) r.r2 = false;
  if (qa.no_r3) r.r3 = false;
  if (qa.no_r4) r.r4 = false;
  o.calib_path = qa.calib;
  o.nsamples = qa.nsamples;
  o.seqlen = qa.seqlen;
  o.seed = qa.seed;
  o.gptq.percdamp = r.percdamp;
  o.gptq.act_order = r.act_order;
  o.gptq.f64 = r.gptq_f64;
  o.progress = !qa.quiet;
  // Packed integer weights by default (what a quantizer is expected to write: smaller than the
  // input, run by the integer kernels); --fake keeps fp32 weights on the grid for research.
  const bool packed = !qa.fake;
  std::unique_ptr<QuantizedModelWriter> writer;
  if (stream) writer = std::make_unique<QuantizedModelWriter>(*m, qa.out, qa.force, packed, std::vector<std::string>{qa.calib});
  else check_output_dir(*m, qa.out, qa.force, {qa.calib});
  o.sink = writer.get();
  QuantizeReport rep = quantize_model(*m, o);
  // The finished recipe is checked by the rules a load applies (the options were range-checked
  // by the same bounds when parsed): quantize never writes a model that eval would refuse.
  validate_recipe(o.recipe, join_path(qa.out, "recipe.json"));
  auto tw = std::chrono::steady_clock::now();
  if (writer) writer->finish(*m, o.recipe);
  else save_quantized(*m, o.recipe, qa.out, qa.force, packed, {qa.calib});
  rep.add_step("write", seconds_since(tw));
  rep.peak_rss_mib = peak_rss_mib();
  if (qa.json) {
    nlohmann::json j = {{"out", qa.out}, {"method", r.method}, {"weights", r.weight_algo},
                        {"w", r.w.describe()}, {"a", r.a.describe()}, {"k", r.k.describe()}, {"v", r.v.describe()},
                        {"seconds", rep.seconds}, {"peak_rss_mib", rep.peak_rss_mib}, {"peak_step", rep.peak_step}, {"nsamples", rep.nsamples},
                        {"seqlen", rep.seqlen}, {"r1", rep.r1_kind}, {"r2", rep.r2_kind}, {"r3", rep.r3_kind},
                        {"r4", rep.r4_kind}, {"streamed", stream}};
    nlohmann::json steps = nlohmann::json::object();
    for (const auto& [n, v] : rep.step_seconds) steps[n] = v;
    j["step_seconds"] = steps;
    if (r.method == "kurtail")
      j["kurtail"] = {{"r1_kurtosis_init", rep.kt_r1_kurt_init}, {"r1_kurtosis_final", rep.kt_r1_kurt_final},
                      {"r2_kurtosis_init", rep.kt_r2_kurt_init}, {"r2_kurtosis_final", rep.kt_r2_kurt_final},
                      {"r1_steps", rep.kt_r1_steps}, {"r1_rows", rep.kt_rows_r1}, {"learn_seconds", rep.kt_seconds},
                      {"capture_seconds", rep.kt_capture_seconds}, {"learn_cpu_seconds", rep.prepare_cpu_seconds}};
    if (r.method == "spinquant")
      j["spinquant"] = {{"loss_init", rep.sq_loss_init}, {"loss_final", rep.sq_loss_final}, {"steps", rep.sq_steps},
                        {"windows_per_step", rep.sq_batch}, {"train_weights", rep.sq_train_weights},
                        {"learn_seconds", rep.sq_seconds}, {"learn_cpu_seconds", rep.prepare_cpu_seconds},
                        {"orthogonality_error", rep.sq_orthogonality_error}};
    if (m->spec.moe()) j["experts_without_calibration"] = rep.experts_without_calibration;
    std::cout << j.dump(2) << std::endl;
  } else {
    std::printf("wrote %s  (%s, weights %s: W %s | A %s | K %s | V %s)\n", qa.out.c_str(), r.method.c_str(),
                r.weight_algo.c_str(), r.w.describe().c_str(), r.a.describe().c_str(), r.k.describe().c_str(),
                r.v.describe().c_str());
    std::printf("rotations: R1 %s  R2 %s  R3 %s  R4 %s\n", rep.r1_kind.empty() ? "off" : rep.r1_kind.c_str(),
                rep.r2_kind.empty() ? "off" : rep.r2_kind.c_str(), rep.r3_kind.empty() ? "off" : rep.r3_kind.c_str(),
                rep.r4_kind.empty() ? "off" : rep.r4_kind.c_str());
    if (r.method == "kurtail")
      std::printf("kurtail: R1 mean kurtosis %.3f -> %.3f (%d steps, %lld rows), R2 %.3f -> %.3f, %.1fs\n",
                  rep.kt_r1_kurt_init, rep.kt_r1_kurt_final, rep.kt_r1_steps, (long long)rep.kt_rows_r1,
                  rep.kt_r2_kurt_init, rep.kt_r2_kurt_final, rep.kt_seconds);
    if (r.method == "spinquant")
      std::printf("spinquant: cross-entropy on the first step's windows %.4f -> %.4f (%d steps of %d windows, weights %s), "
                  "max |RR^T - I| %.1e, %.1fs\n",
                  rep.sq_loss_init, rep.sq_loss_final, rep.sq_steps, rep.sq_batch, rep.sq_train_weights.c_str(),
                  rep.sq_orthogonality_error, rep.sq_seconds);
    if (rep.experts_without_calibration > 0)
      std::printf("gptq: %d experts (over all layers) received no calibration token and were quantized by RTN; "
                  "more calibration (--nsamples) reaches more experts\n",
                  rep.experts_without_calibration);
    std::printf("quantize time %.1fs, peak RSS %.0f MiB%s%s\n", rep.seconds, rep.peak_rss_mib,
                stream ? " (streamed: one layer at a time, written as shards)" : "",
                rep.peak_step.empty() ? "" : (", reached by the end of step " + rep.peak_step).c_str());
    std::string steps;
    for (const auto& [n, v] : rep.step_seconds) steps += (steps.empty() ? "" : ", ") + n + " " + fmt_seconds(v);
    std::printf("steps (wall, all layers): %s\n", steps.c_str());
  }
  return 0;
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto* c = app.add_subcommand("quantize", "Transform and fake-quantize a model; writes OUT with a recipe.json");
  qa.model = join_path(data_dir(), "models/tinyllama-8m");
  qa.calib = join_path(data_dir(), "text/calib.txt");
  path_option(c, "--model", qa.model, "HF model directory or llama2.c .bin")->capture_default_str();
  choice_option(c, "--method", qa.method, "transform method", split_list(Recipe::method_list()))->capture_default_str();
  bits_option(c, "--w", qa.wbits, "weight bits (16 = off)")->capture_default_str();
  bits_option(c, "--a", qa.abits, "activation bits (16 = off)")->capture_default_str();
  bits_option(c, "--kv", qa.kvbits, "KV-cache bits (16 = off)")->capture_default_str();
  choice_option(c, "--weights", qa.weights, "weight algorithm", {"rtn", "gptq"})->capture_default_str();
  path_option(c, "--calib", qa.calib, "calibration text (GPTQ)")->capture_default_str();
  int_option(c, "--nsamples", qa.nsamples, "calibration windows", 1, 1 << 20)->capture_default_str();
  int_option(c, "--seqlen", qa.seqlen, "calibration window length (0 = min(2048, model max))", 2, kMaxCount,
             /*zero_default=*/true);
  u64_option(c, "--seed", qa.seed, "seed for rotations and calibration sampling")->capture_default_str();
  path_option(c, "--out", qa.out, "output directory")->required();
  path_option(c, "--tokenizer", qa.tokenizer, "tokenizer file overriding the one beside the model");
  real_option(c, "--a-clip", qa.a_clip, "activation clip ratio", 0, 1, /*lo_open=*/true)->capture_default_str();
  real_option(c, "--kv-clip", qa.kv_clip, "K/V clip ratio", 0, 1, /*lo_open=*/true)->capture_default_str();
  int_option(c, "--w-group", qa.w_group, "weight group size; must divide every linear's input size (0 = per output channel)",
             1, kMaxCount, /*zero_default=*/true);
  choice_option(c, "--w-scale", qa.w_scale, "weight scale precision (f16: rounded to fp16, stored as F16)",
                {"f32", "f16"})
      ->capture_default_str();
  int_option(c, "--kv-group", qa.kv_group, "K/V group size; must divide head_dim (0 = head_dim)", 1, kMaxCount,
             /*zero_default=*/true);
  qa.opts = Recipe();
  qa.opt_flags = std::make_unique<RecipeFlags>(c, qa.opts);
  qa.opt_flags->add(kGptqOptions);  // --percdamp, --act-order
  c->add_flag("--a-asym", qa.a_asym, "asymmetric activation quantization");
  c->add_flag("--kv-sym", qa.kv_sym, "symmetric K/V quantization");
  c->add_flag("--no-w-mse", qa.no_w_mse, "no MSE clip search for weights");
  c->add_flag("--quant-lm-head", qa.quant_lm_head, "also quantize lm_head (weights and input)");
  lm_head_bits_option(c, qa.lm_head_bits);
  c->add_flag("--no-r1", qa.no_r1, "quarot: skip R1 (residual)");
  c->add_flag("--no-r2", qa.no_r2, "quarot: skip R2 (per-head V/O)");
  c->add_flag("--no-r3", qa.no_r3, "quarot: skip R3 (online Q/K)");
  c->add_flag("--no-r4", qa.no_r4, "quarot: skip R4 (online down_proj)");
  // --alpha, --cq-alpha, --kt-*: the methods' options, in recipe.json's section order
  for (const OptionSection* sec : option_sections())
    if (sec != &kGptqOptions) qa.opt_flags->add(*sec);
  int_option(c, "--truncate-layers", qa.truncate, "keep only the first N layers, experiments (0 = all)", 1, kMaxCount,
             /*zero_default=*/true);
  c->add_flag("--packed", qa.packed, "store quantized linears packed (int4/int8 + scales): the default")
      ->excludes(c->add_flag("--fake", qa.fake, "store fp32 weights on the quantization grid instead of packed integers"));
  real_option(c, "--memory-budget", qa.memory_budget_gib,
              "GiB: a model larger than this in fp32 is quantized one layer at a time and written as one "
              "shard per layer (0 = always stream)",
              0, 1 << 20)
      ->capture_default_str();
  c->add_flag("--force", qa.force, "replace OUT if it is a kurtail output (never another directory or one holding an input)");
  c->add_flag("--json", qa.json, "print a JSON report");
  c->add_flag("-q,--quiet", qa.quiet, "no progress on stderr");
  register_runner(c, run_quantize);
}

}  // namespace kt::cli
