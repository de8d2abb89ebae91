// `kurtail bench`: prefill and decode throughput in llama-bench's terms, so the two tools'
// tables can be pasted side by side: tests ppN and tgN, optionally at a depth ("pp512 @ d2048":
// d tokens are prefilled into the cache untimed first), for each thread count; one untimed
// warm-up run of each test before its timed repetitions; t/s as mean ± standard deviation. A
// prefill computes the logits of its last token only, as llama-bench's does.
// Configurations: the FP model, or the model quantized in memory (fp32, w8a8, w4a8, w4a4 with
// the chosen method's online transforms), or a quantized directory as stored.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "kernels/packed.h"
#include "model/forward.h"
#include "runtime/runner.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/progress.h"

namespace kt::cli {

namespace {

struct BenchArgs {
  std::string model, method = "quarot", configs, k_dot = "f32";
  int lm_head_bits = 0;
  int pp = 512, tg = 128, reps = 5;
  std::vector<int> depths{0}, threads;
  bool json = false, no_warmup = false;
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

// What llama-bench's size and params columns count: every parameter once, and the bytes the
// model holds them in as it runs (packed codes and scales, fp32 for the rest); plus the bytes
// one decoded token reads (every linear, the head and one embedding row).
struct Footprint {
  double params = 0, bytes = 0, bytes_per_token = 0;
};
double elements(const Tensor& t) {  // from the shape: a packed linear's fp32 data is dropped
  double n = 1;
  for (int64_t d : t.shape) n *= (double)d;
  return n;
}
Footprint footprint(const Model& m) {
  const ModelSpec& s = m.spec;
  Footprint f;
  const double head = m.tied() ? 0 : elements(m.lm_head.w);
  f.params = elements(m.embed) + head + s.hidden;  // + the final norm
  f.bytes = 4 * (elements(m.embed) + s.hidden);
  if (m.lm_head.packed) {  // the packed head (quantize --quant-lm-head) and one embedding row
    f.bytes += (double)m.lm_head.packed->bytes();
    f.bytes_per_token = (double)m.lm_head.packed->bytes() + 4.0 * s.hidden;
  } else {
    f.bytes += 4 * head;
    f.bytes_per_token = 4.0 * (elements(m.head()) + s.hidden);
  }
  for (int l = 0; l < s.n_layers; l++) {
    auto lw = m.layer(l);
    double fp32 = 0;  // the layer's parameters that stay fp32: norms, biases, unpacked linears
    lw->for_each_tensor(s, [&](const TensorRow&, int, TensorRole, const Tensor& t) { fp32 += elements(t); });
    f.params += fp32;
    lw->for_each_linear([&](LinearId, const Linear& li) {
      if (!li.packed) {
        f.bytes_per_token += 4.0 * li.out() * li.in();
        return;
      }
      fp32 -= (double)li.out() * li.in();
      f.bytes += (double)li.packed->bytes();
      f.bytes_per_token += (double)li.packed->bytes();
    });
    f.bytes += 4 * fp32;
  }
  return f;
}

// llama-bench's size column: "3.56 GiB" / "23.4 MiB"; params: "6.74 B" / "8.03 M".
std::string human_bytes(double b) {
  char buf[32];
  if (b >= (1 << 30)) std::snprintf(buf, sizeof buf, "%.2f GiB", b / (1 << 30));
  else std::snprintf(buf, sizeof buf, "%.2f MiB", b / (1 << 20));
  return buf;
}
std::string human_params(double p) {
  char buf[32];
  if (p >= 1e9) std::snprintf(buf, sizeof buf, "%.2f B", p / 1e9);
  else std::snprintf(buf, sizeof buf, "%.2f M", p / 1e6);
  return buf;
}

bool is_quantized_dir(const std::string& path) { return file_exists(join_path(path, "recipe.json")); }

// One timed test: prefill `depth` tokens untimed, then `n` tokens as one prefill chunk
// (gen false) or n greedy decode steps (gen true). Returns tokens per second.
double run_test(const RealModel& rm, int depth, int n, bool gen) {
  const Model& m = rm.model();
  const ModelSpec& s = m.spec;
  std::vector<int32_t> toks(std::max(depth, n));
  for (size_t i = 0; i < toks.size(); i++) toks[i] = 1 + (int32_t)((i * 7919) % (s.vocab - 1));
  KVCache cache = rm.session.new_cache(1, depth + n + 1);
  if (depth > 0) forward(m, toks.data(), 1, depth, &cache, rm.session.hooks(), LogitRows::Last);
  auto t0 = std::chrono::steady_clock::now();
  if (!gen) {
    forward(m, toks.data(), 1, n, &cache, rm.session.hooks(), LogitRows::Last);
  } else {
    int32_t t = s.bos_id >= 0 ? s.bos_id : 1;
    for (int i = 0; i < n; i++) {
      check_interrupted();
      auto lg = forward(m, &t, 1, 1, &cache, rm.session.hooks());
      t = (int32_t)(std::max_element(lg.begin(), lg.end()) - lg.begin());
    }
  }
  return n / std::max(seconds_since(t0), 1e-9);
}

int run_bench() {
  std::vector<std::string> cfgs = split_list(ba.configs);
  const bool stored = cfgs.empty() && is_quantized_dir(ba.model);
  if (cfgs.empty()) cfgs = stored ? std::vector<std::string>{"stored"} : split_list("fp32,w8a8,w4a8,w4a4");
  if (stored && ba.lm_head_bits > 0)
    fail("--lm-head-bits", "applies to the in-memory configurations, not to a quantized --model (run as stored)");
  if (ba.threads.empty()) ba.threads = {omp_get_max_threads()};
  nlohmann::json rows = nlohmann::json::array();
  std::string md = "| model | size | params | backend | threads | test | t/s |\n| --- | ---: | ---: | --- | ---: | --- | ---: |\n";
  for (const std::string& c : cfgs) {
    int w = 16, a = 16, kv = 16;
    if (c == "w8a8") w = a = kv = 8;
    else if (c == "w4a8") w = 4, a = kv = 8;
    else if (c == "w4a4") w = a = kv = 4;
    RealModel rm = stored ? load_real(ba.model) : make_real(ba.model, ba.method, w, a, kv, w < 16 ? ba.lm_head_bits : 0);
    rm.session.set_k_dot(k_dot_named(ba.k_dot));
    const ModelSpec& s = rm.model().spec;
    for (int d : ba.depths)
      if (d + std::max(ba.pp, ba.tg + 1) > s.max_pos)
        fail("--depth", std::to_string(d) + " + " + (ba.pp >= ba.tg + 1 ? "--pp " + std::to_string(ba.pp) : "--tg " + std::to_string(ba.tg) + " + 1") +
                            " positions exceed the model's maximum context " + std::to_string(s.max_pos));
    const Footprint fp = footprint(rm.model());
    const std::string name = s.arch + " " + (c == "stored" ? rm.describe().substr(0, rm.describe().find(',')) : c);
    const size_t kv_bytes_per_pos = rm.session.new_cache(1, 1).bytes();
    for (int th : ba.threads) {
      omp_set_num_threads(th);
      for (int d : ba.depths)
        for (bool gen : {false, true}) {
          const int n = gen ? ba.tg : ba.pp;
          if (n == 0) continue;
          if (!ba.no_warmup) run_test(rm, d, gen ? std::min(n, 4) : n, gen);
          std::vector<double> ts;
          for (int r = 0; r < ba.reps; r++) ts.push_back(run_test(rm, d, n, gen));
          const Stat st = stat(ts);
          const std::string test = (gen ? "tg" : "pp") + std::to_string(n) + (d ? " @ d" + std::to_string(d) : "");
          char buf[512];
          std::snprintf(buf, sizeof buf, "| %s | %s | %s | CPU | %d | %s | %.2f ± %.2f |\n", name.c_str(),
                        human_bytes(fp.bytes).c_str(), human_params(fp.params).c_str(), th, test.c_str(), st.mean, st.sd);
          md += buf;
          rows.push_back({{"config", c}, {"model_type", name}, {"execution", rm.describe()}, {"n_threads", th},
                          {"n_prompt", gen ? 0 : n}, {"n_gen", gen ? n : 0}, {"n_depth", d}, {"avg_ts", st.mean},
                          {"stddev_ts", st.sd}, {"samples_ts", ts}, {"model_size", fp.bytes}, {"model_n_params", fp.params},
                          {"weight_bytes_per_token", fp.bytes_per_token},
                          {"kv_bytes_per_position", kv_bytes_per_pos}, {"reps", ba.reps}, {"warmup", !ba.no_warmup}});
        }
    }
    if (!ba.json)
      std::fprintf(stderr, "%s: %s; weights read per token %.2f MiB; K/V cache %.1f KiB per position\n", name.c_str(),
                   rm.describe().c_str(), fp.bytes_per_token / 1048576.0, kv_bytes_per_pos / 1024.0);
  }
  if (ba.json) std::cout << nlohmann::json{{"model", ba.model}, {"rows", rows}, {"peak_rss_mib", peak_rss_mib()}}.dump(2) << std::endl;
  else std::cout << md;
  return 0;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* b = app.add_subcommand("bench", "Prefill/decode tokens per second (llama-bench's tests and table)");
  ba.model = join_path(data_dir(), "models/tinyllama-8m");
  path_option(b, "--model", ba.model, "FP model (quantized in memory per config) or a quantized directory (run as stored)")
      ->capture_default_str();
  choice_option(b, "--method", ba.method, "online Hadamards (quarot) included in the timing", {"rtn", "quarot"})
      ->capture_default_str();
  lm_head_bits_option(b, ba.lm_head_bits)->description(
      "in-memory configurations: quantize lm_head's weights and input to this many bits (0: the head stays fp32, "
      "as quantize's default; 6 and 8 pack it as quantize --lm-head-bits 6 / 8 writes it)");
  choice_list_option(b, "--configs", ba.configs,
                     "comma-separated configurations (default fp32,w8a8,w4a8,w4a4; a quantized --model: as stored)",
                     {"fp32", "w8a8", "w4a8", "w4a4"});
  int_option(b, "-p,--pp", ba.pp, "prompt tokens of the pp test (0: no pp test)", 0, kMaxCount)->capture_default_str();
  int_option(b, "-n,--tg", ba.tg, "generated tokens of the tg test (0: no tg test)", 0, kMaxCount)->capture_default_str();
  int_list_option(b, "-d,--depth", ba.depths, "comma-separated depths: tokens already in the cache (llama-bench -d)", 0,
                  kMaxCount);
  int_list_option(b, "-t,--threads", ba.threads, "comma-separated thread counts (default: OpenMP's)", 1, 1024);
  int_option(b, "-r,--reps", ba.reps, "timed repetitions of each test", 1, 10000)->capture_default_str();
  k_dot_option(b, ba.k_dot);
  b->add_flag("--no-warmup", ba.no_warmup, "skip the untimed warm-up run of each test");
  b->add_flag("--json", ba.json, "JSON output (llama-bench's field names where they exist)");
  register_runner(b, run_bench);
}

}  // namespace kt::cli
