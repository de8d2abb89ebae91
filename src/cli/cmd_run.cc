// `kurtail run`: generation on the real low-bit model (integer kernels, quantized K/V cache).
#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "eval/generate.h"
#include "runtime/runner.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace kt::cli {

namespace {

struct RunArgs {
  std::string model, prompt, k_dot = "f32";
  int n = 64;
  float temperature = 0;
  uint64_t seed = 0;
} ra;

int run_run() {
  RealModel rm = load_real(ra.model);
  rm.session.set_k_dot(k_dot_named(ra.k_dot));
  std::fprintf(stderr, "model: %s\n", rm.describe().c_str());
  const Model& m = rm.model();
  auto prompt = m.tokenizer->encode_for_model(ra.prompt);
  if (prompt.empty() && m.spec.bos_id >= 0) prompt.push_back(m.spec.bos_id);
  GenOptions g;
  g.n_new = ra.n;
  g.temperature = ra.temperature;
  g.seed = ra.seed;
  size_t kv_bytes = 0;
  double prefill_s = 0;
  g.kv_bytes = &kv_bytes;
  g.prefill_seconds = &prefill_s;
  std::fputs(ra.prompt.c_str(), stdout);
  int prev = prompt.back(), produced = 0;
  auto t0 = std::chrono::steady_clock::now();
  generate(rm.session, prompt, g, [&](int id) {
    std::fputs(m.tokenizer->piece(prev, id).c_str(), stdout);
    std::fflush(stdout);
    prev = id;
    produced++;
  });
  double total = seconds_since(t0);
  std::printf("\n");
  std::fprintf(stderr, "prompt %zu tokens in %.3fs (%.1f tok/s); %d tokens generated in %.3fs (%.1f tok/s); KV cache %.1f KiB; peak RSS %.0f MiB\n",
               prompt.size(), prefill_s, prompt.size() / std::max(prefill_s, 1e-9), produced, total - prefill_s,
               produced / std::max(total - prefill_s, 1e-9), kv_bytes / 1024.0, peak_rss_mib());
  return 0;
}

}  // namespace

void register_run(CLI::App& app) {
  auto* c = app.add_subcommand("run", "Generate with a quantized model on the integer kernels and int KV cache");
  ra.model = join_path(data_dir(), "models/tinyllama-8m");
  path_option(c, "--model", ra.model, "quantized model directory (or an FP model)")->capture_default_str();
  text_option(c, "--prompt", ra.prompt, "prompt text");
  int_option(c, "-n", ra.n, "tokens to generate (stops at the model's maximum context)", 0, kMaxCount)
      ->capture_default_str();
  real_option(c, "--temperature", ra.temperature, "sampling temperature (0 = greedy)", 0, 100)->capture_default_str();
  u64_option(c, "--seed", ra.seed, "sampling seed")->capture_default_str();
  k_dot_option(c, ra.k_dot);
  register_runner(c, run_run);
}

}  // namespace kt::cli
