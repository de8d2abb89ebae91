// `kurtail analyze`: outlier diagnostics per layer and site for a model (or a transformed
// model directory with a recipe: measured after its online rotations, before quantization).
#include <cstdio>
#include <iostream>

#include "quant/session.h"
#include "quant/validate_model.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "eval/diagnostics.h"
#include "eval/report.h"
#include "quant/pipeline.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/output.h"

namespace kt::cli {

namespace {

struct AArgs {
  std::string model, calib, out, site = "down_in";
  std::vector<std::string> methods;
  int nsamples = 16, seqlen = 0, bits = 4, layer = 1;
  double cq_alpha = 0.5;
  uint64_t seed = 0;
  bool json = false, quiet = false, force = false;
} aa;

OutputPolicy report_policy() {
  OutputPolicy pol;
  pol.force = aa.force;
  pol.kind = "HTML report";
  pol.is_own_output = is_kurtail_report;
  pol.inputs = {aa.model, aa.calib};
  return pol;
}

int run_analyze() {
  if (!aa.out.empty()) check_output(aa.out, report_policy(), /*is_dir=*/false);  // before the work
  OnlineCaps transforms_only;  // the activations as the quantizers would see them, not quantized
  transforms_only.quantize_activations = false;
  Session sess = open_session(aa.model, -1, "", transforms_only);
  const Model* m = &sess.model();
  int seqlen = aa.seqlen > 0 ? aa.seqlen : std::min(2048, m->spec.max_pos);
  if (seqlen > m->spec.max_pos)
    fail("--seqlen: " + std::to_string(seqlen) + " exceeds the model's maximum context of " +
         std::to_string(m->spec.max_pos));
  check_below("--layer", aa.layer, m->spec.n_layers, "the model's layer count");
  Windows w = calibration_windows(*m->tokenizer, aa.calib, aa.nsamples, seqlen, aa.seed);
  Site chan_site = Site::DownIn;
  bool found = false;
  for (int i = 0; i < kNumSites; i++)
    if (aa.site == site_name((Site)i)) chan_site = (Site)i, found = true;
  if (!found) fail("--site must be one of attn_in, q, k, v, o_in, mlp_in, down_in");
  QuantSpec zs;
  zs.bits = aa.bits;
  std::vector<DiagnosticsRun> runs;
  runs.emplace_back(sess.quantized() ? sess.recipe()->method : "original",
                    collect_diagnostics(sess, w, zs, !aa.quiet, aa.cq_alpha));
  for (const std::string& method : aa.methods) {
    // the method's transforms in full precision, measured where its quantizers would act
    std::shared_ptr<Model> mm = open_model(aa.model);
    QuantizeOptions o;
    o.progress = !aa.quiet;
    o.calib_path = aa.calib;
    o.nsamples = std::min(aa.nsamples, 32);
    o.seqlen = seqlen;
    o.seed = aa.seed;
    Recipe& r = o.recipe;
    r.set_method(method);
    r.set_bits(16, 16, 16, mm->spec.head_dim);
    r.seed = aa.seed;
    quantize_model(*mm, o);
    runs.emplace_back(method, collect_diagnostics(Session(mm, o.recipe, transforms_only), w, zs, !aa.quiet, aa.cq_alpha));
  }
  if (!aa.out.empty()) {
    OutputFile f(aa.out, report_policy());
    f.write(html_report(aa.model, runs, aa.layer, chan_site, aa.bits));
    check_interrupted();
    f.commit();
    if (!aa.quiet) std::fprintf(stderr, "wrote %s\n", aa.out.c_str());
  }
  if (aa.json) {
    std::cout << "[";
    for (size_t i = 0; i < runs.size(); i++) std::cout << (i ? ",\n" : "") << diagnostics_json(runs[i].second, runs[i].first);
    std::cout << "]" << std::endl;
    return 0;
  }
  if (!aa.out.empty()) return 0;
  for (auto& [label, d] : runs) {
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
  }
  return 0;
}

}  // namespace

void register_analyze(CLI::App& app) {
  auto* c = app.add_subcommand("analyze", "Outlier diagnostics per layer and activation site");
  aa.model = join_path(data_dir(), "models/tinyllama-8m");
  aa.calib = join_path(data_dir(), "text/calib.txt");
  path_option(c, "--model", aa.model, "model directory (with recipe.json: measured after its online rotations)")
      ->capture_default_str();
  path_option(c, "--calib", aa.calib, "text to run")->capture_default_str();
  int_option(c, "--nsamples", aa.nsamples, "windows", 1, 1 << 20)->capture_default_str();
  int_option(c, "--seqlen", aa.seqlen, "window length (0 = min(2048, model max))", 2, kMaxCount, /*zero_default=*/true);
  bits_option(c, "--bits", aa.bits, "bits of the per-token quantizer for the zero share")->capture_default_str();
  u64_option(c, "--seed", aa.seed, "window sampling seed")->capture_default_str();
  choice_option(c, "--method", aa.methods, "also measure these methods' transforms (repeatable)",
                split_list(Recipe::method_list()));
  path_option(c, "--out", aa.out, "write a self-contained HTML report here");
  int_option(c, "--layer", aa.layer, "layer of the channel-magnitude plot (below the model's layer count)", 0,
             kMaxCount)
      ->capture_default_str();
  std::vector<std::string> sites;
  for (int i = 0; i < kNumSites; i++) sites.push_back(site_name((Site)i));
  choice_option(c, "--site", aa.site, "site of the channel-magnitude plot", sites)->capture_default_str();
  real_option(c, "--cq-alpha", aa.cq_alpha, "CrossQuant exponent for its zero share", 0, 1)->capture_default_str();
  c->add_flag("--force", aa.force, "replace --out if it is a report kurtail wrote");
  c->add_flag("--json", aa.json, "JSON output (a list: original first, then each method)");
  c->add_flag("-q,--quiet", aa.quiet, "no progress");
  register_runner(c, run_analyze);
}

}  // namespace kt::cli
