// `kurtail eval` and `kurtail generate`.
#include <cstdio>
#include <algorithm>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "quant/session.h"
#include "quant/validate_model.h"
#include "cli/commands.h"
#include "cli/options.h"
#include "eval/generate.h"
#include "eval/kl.h"
#include "eval/zeroshot.h"
#include "quant/pipeline.h"
#include "kernels/packed.h"
#include "runtime/real_model.h"
#include "eval/perplexity.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/output.h"
#include "util/progress.h"

namespace kt::cli {

namespace {

std::map<CLI::App*, std::function<int()>> g_runners;

std::string default_model() { return join_path(data_dir(), "models/tinyllama-8m"); }
std::string default_text() { return join_path(data_dir(), "text/wikitext2_raw_test.joined.txt"); }

struct EvalArgs {
  std::string model, text, tokenizer, kl_ref, task, tasks, tasks_dir, kernels = "auto", bos = "no", log_samples;
  std::string ppl_protocol = "kurtail", k_dot = "f32";
  int limit = 0, num_fewshot = 0;
  int ctx = 0, max_windows = 0, batch = 0;
  bool json = false, quiet = false, unbatched = false, force = false;
} ea;

// The zero-shot / MMLU part of `eval`: --tasks (or --task, its one-task alias).
int run_tasks(const Session& sess, int ctx, const std::string& method, const std::string& execution,
              std::chrono::steady_clock::time_point t0) {
  const std::vector<std::string> names = expand_tasks(ea.tasks.empty() ? ea.task : ea.tasks);
  ScoreOptions so;
  so.max_len = ctx;
  so.bos = ea.bos == "yes" ? BosMode::Yes : ea.bos == "auto" ? BosMode::Auto : BosMode::No;
  so.batched = !ea.unbatched;
  // every task file is read (and checked) before the first document is scored
  std::vector<Task> tasks;
  for (const auto& n : names) tasks.push_back(load_task(n, ea.tasks_dir, ea.limit, ea.num_fewshot));
  std::unique_ptr<OutputFile> log;
  std::string pending;  // sample lines not yet written
  if (!ea.log_samples.empty()) {
    OutputPolicy pol;
    pol.kind = "sample log";
    pol.force = ea.force;
    pol.is_own_output = is_sample_log;
    pol.inputs = {ea.model, ea.tasks_dir};
    log = std::make_unique<OutputFile>(ea.log_samples, pol);
  }
  SampleSink sink;
  if (log)
    sink = [&](const std::string& task, int i, const TaskDoc& d, const std::vector<ChoiceScore>& sc, int ch, int chn) {
      pending += sample_json_line(task, i, d, sc, ch, chn) + "\n";
      if (pending.size() > (1u << 20)) log->write(pending), pending.clear();
    };
  std::vector<TaskResult> results;
  for (const auto& t : tasks) results.push_back(eval_task(sess, t, so, !ea.quiet, sink));
  if (log) {
    log->write(pending);
    check_interrupted();
    log->commit();
  }
  // QuaRot's / FlatQuant's average: acc_norm where the task has it, else acc
  const std::vector<std::string> paper6 = expand_tasks("paper6");
  double avg = 0;
  int in_avg = 0;
  for (const auto& r : results)
    if (std::find(paper6.begin(), paper6.end(), r.name) != paper6.end())
      avg += (r.metric("acc_norm") ? r.metric("acc_norm") : r.metric("acc"))->value, in_avg++;
  const bool have6 = in_avg == (int)paper6.size();
  const char* agg_note = "mmlu and its groups: mean over documents (lm-eval weight_by_size: True), stderr pooled";
  if (ea.json) {
    nlohmann::json j = {{"model", ea.model}, {"method", method}, {"execution", execution}, {"ctx", ctx},
                        {"bos", bos_name(so.bos)}, {"num_fewshot", ea.num_fewshot}, {"limit", ea.limit},
                        {"batched", so.batched}, {"tasks_dir", ea.tasks_dir}};
    auto metrics_json = [](const TaskResult& r) {
      nlohmann::json m = {{"n", r.n}, {"truncated_items", r.truncated}};
      for (const auto& x : r.metrics) m[x.name] = x.value, m[x.name + "_stderr"] = x.se;
      return m;
    };
    nlohmann::json tj = nlohmann::json::object();
    for (const auto& r : results) {
      nlohmann::json m = metrics_json(r);
      m["seconds"] = r.seconds;
      m["docs_per_s"] = r.seconds > 0 ? r.n / r.seconds : 0;
      if (!r.note.empty()) m["note"] = r.note;
      if (!r.children.empty()) {
        m["aggregation"] = agg_note;
        for (const auto& g : r.children) {
          nlohmann::json gj = metrics_json(g);
          for (const auto& sub : g.children) gj["subjects"][sub.name] = metrics_json(sub);
          m["groups"][g.name] = gj;
        }
      }
      tj[r.name] = m;
    }
    j["tasks"] = tj;
    if (have6) j["paper6_average"] = avg / in_avg;
    if (results.size() == 1) {  // one task: its metrics also at the top level (as `--task piqa` always printed)
      j["task"] = results[0].name;
      const nlohmann::json top = metrics_json(results[0]);  // (a named value: items() of a temporary dangles)
      for (auto& [k, v] : top.items()) j[k] = v;
      j["seconds"] = results[0].seconds;
    }
    j["total_seconds"] = seconds_since(t0);
    std::cout << j.dump(2) << std::endl;
    return 0;
  }
  const std::string limit_note =
      ea.limit > 0 ? "; --limit " + std::to_string(ea.limit) + " documents per task (per subject for mmlu)" : "";
  std::printf("bos: %s%s; ctx %d; num_fewshot %d (mmlu)%s\n", bos_name(so.bos),
              so.bos == BosMode::No ? " (lm-eval before 0.4.9.2 on Llama models: no BOS)" : "", ctx, ea.num_fewshot,
              limit_note.c_str());
  std::printf("| %-22s | %6s | %-10s | %8s |   | %7s | %7s |\n", "task", "n", "metric", "value", "stderr", "docs/s");
  std::printf("|------------------------|--------|------------|----------|---|---------|---------|\n");
  auto rows = [&](const TaskResult& r, const std::string& label, bool speed) {
    bool first = true;
    for (const auto& m : r.metrics) {
      std::string n = first ? std::to_string(r.n) : "";
      char sp[32] = "";
      if (first && speed && r.seconds > 0) std::snprintf(sp, sizeof sp, "%.1f", r.n / r.seconds);
      std::printf("| %-22s | %6s | %-10s | %8.4f | ± | %7.4f | %7s |\n", first ? label.c_str() : "", n.c_str(),
                  m.name.c_str(), m.value, m.se, sp);
      first = false;
    }
  };
  for (const auto& r : results) {
    rows(r, r.name, true);
    for (const auto& g : r.children) rows(g, " - " + g.name, false);
  }
  if (have6) std::printf("6-task average (piqa, winogrande, hellaswag, arc_easy, arc_challenge, lambada_openai; acc_norm where the task has it, else acc): %.4f\n", avg / in_avg);
  for (const auto& r : results) {
    if (!r.children.empty()) std::printf("%s: %s\n", r.name.c_str(), agg_note);
    if (!r.note.empty()) std::printf("%s: %s\n", r.name.c_str(), r.note.c_str());
    if (r.truncated)
      std::printf("%s: %d of %d items longer than the context of %d tokens: context cut on the left (as lm-eval)\n",
                  r.name.c_str(), r.truncated, r.n, ctx);
  }
  return 0;
}

int run_eval() {
  auto t0 = std::chrono::steady_clock::now();
  std::optional<Recipe> rec;  // the recipe is validated once, here
  std::shared_ptr<Model> m = open_model(ea.model, -1, ea.tokenizer, &rec);
  int ctx = ea.ctx > 0 ? ea.ctx : std::min(2048, m->spec.max_pos);
  if (ctx > m->spec.max_pos)
    fail("--ctx " + std::to_string(ctx) + " exceeds the model's maximum context of " + std::to_string(m->spec.max_pos));
  EvalOptions opt;
  opt.batch = ea.batch;
  opt.progress = !ea.quiet;
  const bool quantized = rec.has_value();
  const Recipe recipe = rec.value_or(Recipe{});
  std::string path_used = quantized ? "fake-quant" : "fp32";
  Session sess;  // set below: fake quantization, the integer kernels, or FP
  if (quantized && ea.kernels == "fake") unpack_model(*m);  // a packed model evaluated through fake quantization
  if (quantized && ea.kernels != "fake") {
    std::string why;
    if (recipe_runs_on_kernels(recipe, &why)) {
      PackReport pr = pack_model_for_kernels(*m, recipe, /*drop_fp32=*/true);
      if (pr.packed > 0) {
        sess = kernel_session(m, recipe, pr, kv_cache_supported(recipe, m->spec));
        path_used = std::string(sess.quantizes_kv_cache() ? "int" + std::to_string(recipe.k.bits) + " KV cache, " : "") +
                    "int kernels (" + kernel_name(active_kernel()) + ", " + std::to_string(pr.packed) +
                    " linears, " + std::to_string(pr.packed_bytes >> 10) + " KiB packed vs " +
                    std::to_string(pr.fp32_bytes >> 10) + " KiB fp32)";
      } else if (ea.kernels == "real") {
        fail(ea.model, "--kernels real: no linear has integer weight scales (quantized before scales were recorded?)");
      }
    } else if (ea.kernels == "real") {
      fail(ea.model, "--kernels real: " + why);
    }
  } else if (!quantized && ea.kernels == "real") {
    fail(ea.model, "--kernels real needs a quantized model (no recipe.json)");
  }
  if (!sess.quantized()) sess = quantized ? Session(m, recipe) : Session(std::shared_ptr<const Model>(m));
  sess.set_k_dot(k_dot_named(ea.k_dot));
  if (!ea.quiet) std::fprintf(stderr, "execution: %s\n", path_used.c_str());
  if (quantized && !ea.quiet) std::fprintf(stderr, "recipe: %s, weights %s, A %s, K %s, V %s\n", recipe.method.c_str(),
                                       recipe.w.describe().c_str(), recipe.a.describe().c_str(),
                                       recipe.k.describe().c_str(), recipe.v.describe().c_str());
  if (!ea.task.empty() || !ea.tasks.empty())
    return run_tasks(sess, ctx, quantized ? recipe.method : "fp", path_used, t0);
  // --max-windows K: only the first K windows are read (make_windows takes the first K)
  auto toks = tokenize_file(*m->tokenizer, ea.text, ea.max_windows > 0 ? (size_t)ea.max_windows * ctx : 0);
  Windows w = make_windows(toks, ctx, ea.max_windows, ea.text);
  if (ea.ppl_protocol == "llama.cpp") {
    if (!ea.kl_ref.empty())
      fail("--ppl-protocol llama.cpp scores perplexity only; --kl-ref compares every position (the kurtail protocol)");
    llamacpp_windows(w, m->spec.bos_id, ea.text);
    opt.protocol = PplProtocol::LlamaCpp;
  }
  if (!ea.kl_ref.empty()) {
    Session ref = open_session(ea.kl_ref, -1);  // fake quantization, fp32 K/V
    CompareResult c = compare_to_reference(ref, sess, w, opt);
    double total_s = seconds_since(t0);
    if (ea.json) {
      nlohmann::json j = {{"model", ea.model}, {"reference", ea.kl_ref}, {"text", ea.text}, {"ctx", w.ctx},
                          {"windows", w.n()}, {"predicted_tokens", c.positions}, {"perplexity", c.ppl},
                          {"mean_nll", c.mean_nll}, {"ref_perplexity", c.ref_ppl}, {"kl", c.mean_kl},
                          {"top1_agreement", c.top1}, {"method", quantized ? recipe.method : "fp"},
                          {"execution", path_used},
                          {"total_seconds", total_s}, {"peak_rss_mib", peak_rss_mib()}};
      std::cout << j.dump(2) << std::endl;
    } else {
      std::printf("perplexity %.4f (reference %.4f)  KL %.5f nats/token  top-1 agreement %.2f%%  (%lld tokens)\n",
                  c.ppl, c.ref_ppl, c.mean_kl, 100 * c.top1, (long long)c.positions);
    }
    return 0;
  }
  PplResult r = perplexity(sess, w, opt);
  double total_s = seconds_since(t0);
  if (ea.json) {
    nlohmann::json j = {{"model", ea.model}, {"text", ea.text},          {"ctx", r.ctx},
                        {"windows", r.windows}, {"predicted_tokens", r.predicted}, {"mean_nll", r.mean_nll},
                        {"perplexity", r.ppl}, {"eval_seconds", r.seconds}, {"tokens_per_s", r.tokens_per_s},
                        {"total_seconds", total_s}, {"peak_rss_mib", peak_rss_mib()}, {"text_tokens", toks.size()},
                        {"method", quantized ? recipe.method : "fp"}, {"execution", path_used},
                        {"ppl_protocol", ppl_protocol_name(opt.protocol)}};
    std::cout << j.dump(2) << std::endl;
  } else {
    std::printf("perplexity %.4f  (mean NLL %.6f over %lld predicted tokens, %d windows x %d, %s protocol)\n", r.ppl,
                r.mean_nll, (long long)r.predicted, r.windows, r.ctx, ppl_protocol_name(opt.protocol));
    std::printf("%.0f tokens/s, eval %.1fs, total %.1fs, peak RSS %.0f MiB\n", r.tokens_per_s, r.seconds, total_s,
                peak_rss_mib());
  }
  return 0;
}

struct GenArgs {
  std::string model, prompt, tokenizer;
  int n = 40;
  float temperature = 0, top_p = 1;
  uint64_t seed = 0;
} ga;

int run_generate() {
  Session sess = open_session(ga.model, -1, ga.tokenizer);
  const Model* m = &sess.model();
  auto prompt = m->tokenizer->encode_for_model(ga.prompt);
  if (prompt.empty() && m->spec.bos_id >= 0) prompt.push_back(m->spec.bos_id);
  GenOptions opt;
  opt.n_new = ga.n;
  opt.temperature = ga.temperature;
  opt.top_p = ga.top_p;
  opt.seed = ga.seed;
  std::fputs(ga.prompt.c_str(), stdout);
  int prev = prompt.back();
  auto t0 = std::chrono::steady_clock::now();
  int produced = 0;
  generate(sess, prompt, opt, [&](int id) {
    std::fputs(m->tokenizer->piece(prev, id).c_str(), stdout);
    std::fflush(stdout);
    prev = id;
    produced++;
  });
  double s = seconds_since(t0);
  std::printf("\n");
  std::fprintf(stderr, "%d tokens in %.2fs (%.1f tokens/s, prompt %zu tokens)\n", produced, s, produced / s,
               prompt.size());
  return 0;
}

}  // namespace

void register_eval(CLI::App& app) {
  auto* c = app.add_subcommand("eval", "Perplexity of a model on a text (non-overlapping windows)");
  ea.model = default_model();
  ea.text = default_text();
  path_option(c, "--model", ea.model, "HF model directory or llama2.c .bin")->capture_default_str();
  path_option(c, "--text", ea.text, "text file to evaluate on")->capture_default_str();
  path_option(c, "--tokenizer", ea.tokenizer, "tokenizer file overriding the one beside the model");
  int_option(c, "--ctx", ea.ctx, "window length in tokens, and the zero-shot context (0 = min(2048, model max))",
             2, kMaxCount, /*zero_default=*/true);
  int_option(c, "--max-windows", ea.max_windows, "evaluate at most this many windows (0 = all)", 0, kMaxCount);
  int_option(c, "--batch", ea.batch, "windows per forward chunk (0 = automatic)", 0, 1024);
  ea.tasks_dir = join_path(data_dir(), "tasks");
  std::vector<std::string> task_choices = known_tasks();
  auto* tasks_opt = choice_list_option(c, "--tasks", ea.tasks,
                                       "zero-shot tasks / MMLU instead of perplexity, comma-separated (all = every task; "
                                       "paper6 = piqa, winogrande, hellaswag, arc_easy, arc_challenge, lambada_openai)",
                                       [&] {
                                         auto v = task_choices;
                                         v.push_back("all");
                                         v.push_back("paper6");
                                         return v;
                                       }());
  choice_option(c, "--task", ea.task, "one zero-shot task (the same as --tasks with one name)", task_choices)
      ->excludes(tasks_opt);
  path_option(c, "--tasks-dir", ea.tasks_dir, "directory holding the task data (lm-eval's splits; docs/EVAL.md)")
      ->capture_default_str();
  int_option(c, "--limit", ea.limit, "evaluate only the first N documents of each task (MMLU: of each subject; 0 = all)",
             0, kMaxCount);
  int_option(c, "--num-fewshot", ea.num_fewshot, "MMLU: examples from the dev split before each question (lm-eval's first_n)",
             0, 5)
      ->capture_default_str();
  choice_option(c, "--bos", ea.bos,
                "BOS before each task context: no (lm-eval before 0.4.9.2 on Llama, the papers' setting), yes, or auto "
                "(the tokenizer's default)",
                {"no", "yes", "auto"})
      ->capture_default_str();
  path_option(c, "--log-samples", ea.log_samples,
              "write one JSON line per document (choice log-likelihoods, is_greedy, chosen, gold) to this new file");
  c->add_flag("--force", ea.force, "--log-samples: replace an existing sample log kurtail wrote");
  c->add_flag("--unbatched", ea.unbatched, "score each choice in its own forward pass (slower; for checking the batching)");
  k_dot_option(c, ea.k_dot);
  choice_option(c, "--kernels", ea.kernels, "integer kernels when the model allows (auto), required (real), or never (fake)",
                {"auto", "real", "fake"})
      ->capture_default_str();
  path_option(c, "--kl-ref", ea.kl_ref, "reference model: report KL divergence and top-1 agreement against it");
  choice_option(c, "--ppl-protocol", ea.ppl_protocol,
                "kurtail: every position of every window (the papers'); llama.cpp: llama-perplexity's (BOS first in "
                "each chunk, second half scored; docs/EVAL.md)",
                {"kurtail", "llama.cpp"})
      ->capture_default_str();
  c->add_flag("--json", ea.json, "print a JSON result on stdout");
  c->add_flag("-q,--quiet", ea.quiet, "no progress on stderr");
  g_runners[c] = run_eval;
}

void register_generate(CLI::App& app) {
  auto* c = app.add_subcommand("generate", "Generate text from a prompt (greedy unless --temperature > 0)");
  ga.model = default_model();
  path_option(c, "--model", ga.model, "HF model directory or llama2.c .bin")->capture_default_str();
  text_option(c, "--prompt", ga.prompt, "prompt text");
  path_option(c, "--tokenizer", ga.tokenizer, "tokenizer file overriding the one beside the model");
  int_option(c, "-n", ga.n, "tokens to generate (stops at the model's maximum context)", 0, kMaxCount)
      ->capture_default_str();
  real_option(c, "--temperature", ga.temperature, "sampling temperature (0 = greedy)", 0, 100)->capture_default_str();
  real_option(c, "--top-p", ga.top_p, "nucleus sampling threshold", 0, 1, /*lo_open=*/true)->capture_default_str();
  u64_option(c, "--seed", ga.seed, "sampling seed")->capture_default_str();
  g_runners[c] = run_generate;
}

void register_runner(CLI::App* sub, std::function<int()> fn) { g_runners[sub] = std::move(fn); }

int run_selected(CLI::App& app) {
  for (auto& [sub, fn] : g_runners)
    if (sub->parsed()) return fn();
  return 2;
}

}  // namespace kt::cli
