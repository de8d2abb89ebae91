// `kurtail analyze`: outlier diagnostics per layer and site for a model (or a transformed
// model directory with a recipe: measured after its online rotations, before quantization).
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "eval/diagnostics.h"
#include "quant/pipeline.h"
#include "util/error.h"
#include "util/file.h"

namespace kt::cli {

namespace {

struct AArgs {
  std::string model, calib;
  int nsamples = 16, seqlen = 0, bits = 4;
  uint64_t seed = 0;
  bool json = false, quiet = false;
} aa;

int run_analyze() {
  auto m = Model::open(aa.model);
  int seqlen = aa.seqlen > 0 ? aa.seqlen : std::min(2048, m->spec.max_pos);
  if (seqlen > m->spec.max_pos) fail("--seqlen exceeds the model's maximum context");
  Windows w = calibration_windows(*m->tokenizer, aa.calib, aa.nsamples, seqlen, aa.seed);
  Recipe recipe;
  auto hooks = load_recipe_hooks(aa.model, m->spec, &recipe);
  if (hooks) hooks->quantize_activations = false;
  QuantSpec zs;
  zs.bits = aa.bits;
  auto d = collect_diagnostics(*m, hooks.get(), w, zs, !aa.quiet);
  std::string label = hooks ? recipe.method : "original";
  if (aa.json) {
    std::cout << diagnostics_json(d, label) << std::endl;
    return 0;
  }
  std::printf("%s: per-token kurtosis (mean/max), max/median |x|, int%d per-token zero share, channel-magnitude CV\n",
              label.c_str(), aa.bits);
  std::printf("| layer | site | kurt mean | kurt max | max/median | zero share | chan-mag CV |\n|---|---|---|---|---|---|---|\n");
  for (size_t l = 0; l < d.size(); l++)
    for (int s = 0; s < kNumSites; s++) {
      const SiteStats& st = d[l].site[s];
      if (!st.seen) continue;
      std::printf("| %zu | %s | %.2f | %.1f | %.1f | %.3f | %.3f |\n", l, site_name((Site)s), st.kurt_mean, st.kurt_max,
                  st.max_over_median, st.zero_share, st.chan_mag_cv);
    }
  return 0;
}

}  // namespace

void register_analyze(CLI::App& app) {
  auto* c = app.add_subcommand("analyze", "Outlier diagnostics per layer and activation site");
  aa.model = join_path(data_dir(), "models/tinyllama-8m");
  aa.calib = join_path(data_dir(), "text/calib.txt");
  c->add_option("--model", aa.model, "model directory (with recipe.json: measured after its online rotations)")
      ->capture_default_str();
  c->add_option("--calib", aa.calib, "text to run")->capture_default_str();
  c->add_option("--nsamples", aa.nsamples, "windows")->capture_default_str();
  c->add_option("--seqlen", aa.seqlen, "window length (0 = min(2048, model max))");
  c->add_option("--bits", aa.bits, "bits of the per-token quantizer for the zero share")->capture_default_str();
  c->add_option("--seed", aa.seed, "window sampling seed")->capture_default_str();
  c->add_flag("--json", aa.json, "JSON output");
  c->add_flag("-q,--quiet", aa.quiet, "no progress");
  register_runner(c, run_analyze);
}

}  // namespace kt::cli
