// `kurtail run` (generation on the real low-bit model) and `kurtail bench` (prefill / decode
// throughput of FP32, W8A8, W4A8 and W4A4 on the same model).
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "kernels/packed.h"
#include "eval/generate.h"
#include "runtime/runner.h"
#include "util/error.h"
#include "util/file.h"
#include "util/progress.h"

namespace kt::cli {

namespace {

struct RunArgs {
  std::string model, prompt;
  int n = 64;
  float temperature = 0;
  uint64_t seed = 0;
} ra;

int run_run() {
  RealModel rm = load_real(ra.model);
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

struct BenchArgs {
  std::string model, method = "quarot", configs = "fp32,w8a8,w4a8,w4a4";
  int pp = 512, tg = 128, reps = 5;
  bool json = false;
} ba;

struct Stat {
  double mean = 0, sd = 0;
};
Stat stat(const std::vector<double>& v) {
  Stat s;
  for (double x : v) s.mean += x;
  s.mean /= v.size();
  for (double x : v) s.sd += (x - s.mean) * (x - s.mean);
  s.sd = v.size() > 1 ? std::sqrt(s.sd / (v.size() - 1)) : 0;
  return s;
}

int run_bench() {
  nlohmann::json rows = nlohmann::json::array();
  std::string md = "| config | execution | pp" + std::to_string(ba.pp) + " tok/s | tg" + std::to_string(ba.tg) +
                   " tok/s | weight bytes read / token | KV bytes (" + std::to_string(ba.pp) + " ctx) |\n|---|---|---|---|---|---|\n";
  std::vector<std::string> cfgs;
  for (size_t a = 0, b; a < ba.configs.size(); a = b + 1) {
    b = ba.configs.find(',', a);
    if (b == std::string::npos) b = ba.configs.size();
    cfgs.push_back(ba.configs.substr(a, b - a));
  }
  for (const std::string& c : cfgs) {
    int w = 16, a = 16, kv = 16;
    if (c == "w8a8") w = a = kv = 8;
    else if (c == "w4a8") w = 4, a = kv = 8;
    else if (c == "w4a4") w = a = kv = 4;
    else if (c != "fp32") fail("--configs: unknown config " + quote(c) + " (fp32, w8a8, w4a8, w4a4)");
    RealModel rm = make_real(ba.model, ba.method, w, a, kv);
    const ModelSpec& s = rm.model().spec;
    const int pp = std::min(ba.pp, s.max_pos), tg = std::min(ba.tg, s.max_pos - 1);
    std::vector<int32_t> toks(pp);
    for (int i = 0; i < pp; i++) toks[i] = 1 + (i * 7919) % (s.vocab - 1);
    std::vector<double> ppv, tgv;
    size_t kvb = 0;
    for (int rep = 0; rep < ba.reps; rep++) {
      {
        KVCache cache = rm.session.new_cache(1, pp);
        auto t0 = std::chrono::steady_clock::now();
        forward(rm.model(), toks.data(), 1, pp, &cache, rm.session.hooks());
        ppv.push_back(pp / seconds_since(t0));
        kvb = cache.bytes();
      }
      {
        KVCache cache = rm.session.new_cache(1, tg + 1);
        int32_t t = s.bos_id;
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < tg; i++) {
          auto lg = forward(rm.model(), &t, 1, 1, &cache, rm.session.hooks());
          t = (int32_t)(std::max_element(lg.begin(), lg.end()) - lg.begin());
        }
        tgv.push_back(tg / seconds_since(t0));
      }
    }
    // weights streamed per decoded token: every linear once + lm_head + one embedding row
    size_t wbytes = (size_t)rm.model().head().numel() * 4 + (size_t)s.hidden * 4;
    for (int l = 0; l < s.n_layers; l++) {
      auto lw = rm.model().layer(l);
      lw->for_each_linear(
          [&](LinearId, const Linear& li) { wbytes += li.packed ? li.packed->bytes() : (size_t)li.out() * li.in() * 4; });
    }
    Stat p = stat(ppv), t = stat(tgv);
    char buf[512];
    std::snprintf(buf, sizeof buf, "| %s | %s | %.1f +- %.1f | %.1f +- %.1f | %.2f MiB | %.1f KiB |\n", c.c_str(),
                  rm.describe().c_str(), p.mean, p.sd, t.mean, t.sd, wbytes / 1048576.0, kvb / 1024.0);
    md += buf;
    rows.push_back({{"config", c}, {"execution", rm.describe()}, {"pp", pp}, {"pp_tok_s", p.mean}, {"pp_sd", p.sd},
                    {"tg", tg}, {"tg_tok_s", t.mean}, {"tg_sd", t.sd}, {"weight_bytes_per_token", wbytes},
                    {"kv_bytes", kvb}, {"reps", ba.reps}});
  }
  if (ba.json) std::cout << nlohmann::json{{"model", ba.model}, {"rows", rows}, {"peak_rss_mib", peak_rss_mib()}}.dump(2) << std::endl;
  else std::cout << md;
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
  register_runner(c, run_run);
  auto* b = app.add_subcommand("bench", "Prefill/decode tokens per second for FP32, W8A8, W4A8, W4A4");
  ba.model = join_path(data_dir(), "models/tinyllama-8m");
  path_option(b, "--model", ba.model, "FP model to quantize in memory")->capture_default_str();
  choice_option(b, "--method", ba.method, "online Hadamards (quarot) included in the timing", {"rtn", "quarot"})
      ->capture_default_str();
  choice_list_option(b, "--configs", ba.configs, "comma-separated configurations", {"fp32", "w8a8", "w4a8", "w4a4"})
      ->capture_default_str();
  int_option(b, "--pp", ba.pp, "prefill length (at most the model's maximum context)", 1, kMaxCount)
      ->capture_default_str();
  int_option(b, "--tg", ba.tg, "decode length (at most the model's maximum context - 1)", 1, kMaxCount)
      ->capture_default_str();
  int_option(b, "--reps", ba.reps, "repetitions", 1, 10000)->capture_default_str();
  b->add_flag("--json", ba.json, "JSON output");
  register_runner(b, run_bench);
}

}  // namespace kt::cli
