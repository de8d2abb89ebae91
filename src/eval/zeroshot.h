// Zero-shot multiple choice by log-likelihood, as lm-evaluation-harness scores it:
// acc picks the choice with the highest summed log-likelihood of its continuation tokens;
// acc_norm divides by the continuation's length in characters. Standard errors are
// sqrt(p(1-p)/(n-1)) (sample standard deviation of the per-item 0/1 score over sqrt(n)).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "eval/tasks.h"
#include "quant/session.h"

namespace kt {

struct MCItem {
  std::string context;
  std::vector<std::string> choices;  // continuations, each starting with the delimiter " "
  int label = 0;
  std::string where;  // "FILE, line N": named by errors about this item
};

struct MCResult {
  std::string task;
  int n = 0;
  double acc = 0, acc_stderr = 0, acc_norm = 0, acc_norm_stderr = 0;
  int truncated = 0;  // items with a choice whose context+continuation did not fit the window
  double seconds = 0;
};

// PIQA validation: DIR/piqa/valid.jsonl + valid-labels.lst. limit <= 0: all.
std::vector<MCItem> load_piqa(const std::string& tasks_dir, int limit);

// Sum of log p(continuation tokens | context). The continuation's tokens are those of
// encode(context + continuation) after the tokens of encode(context) (lm-eval's split);
// BOS is prepended when the tokenizer adds it.
// Items longer than the window (max_len tokens; 0 or above the model's maximum: the model's
// maximum) are cut as lm-eval's HF loglikelihood cuts them: the input is the last max_len + 1
// tokens of context + continuation without the final one, so the context loses tokens on the
// left and the whole continuation is scored; only a continuation longer than the window by
// itself loses its own first tokens (all max_len positions are then scored).
// n_tokens: tokens scored; truncated: whether anything was cut.
// A session whose plan quantizes K/V in the cache keeps K/V in a quantized cache (real execution).
double continuation_loglik(const Session& s, const std::string& context, const std::string& continuation,
                           int* n_tokens = nullptr, int max_len = 0, bool* truncated = nullptr);

// The same on token ids: sum of log p(cont[i] | ctx + cont[..i]) within the window above.
// ctx must not be empty (continuation_loglik puts BOS/EOS there for an empty context).
double tokens_loglik(const Session& s, const std::vector<int>& ctx, const std::vector<int>& cont, int max_len = 0,
                     int* n_tokens = nullptr, bool* truncated = nullptr);

// max_len: the window of continuation_loglik (eval --ctx).
MCResult eval_multiple_choice(const Session& s, const std::vector<MCItem>& items, const std::string& task,
                              bool progress, int max_len = 0);

// ---- lm-eval's tasks (eval/tasks.h): batched scoring, metrics, groups ----

// BOS before the context: No (lm-eval's HF wrapper before v0.4.9.2 for Llama: add_special_tokens
// = False or add_bos_token, add_bos_token defaulting to False; what the papers' numbers were made
// with), Yes, or Auto (the tokenizer's own default, encode_for_model).
enum class BosMode { No, Yes, Auto };
const char* bos_name(BosMode b);

struct ScoreOptions {
  int max_len = 0;  // the window (eval --ctx); 0 or above the model's maximum: the model's maximum
  BosMode bos = BosMode::No;
  bool batched = true;  // all choices of a document in one forward sharing the context (KV cache)
};

// lm-eval's HFLM._encode_pair: trailing whitespace of the context moved to the continuation;
// context + continuation encoded together and split where the context's own encoding ends. An
// empty context becomes the BOS (else EOS) token, as lm-eval's prefix token.
void encode_pair(const Tokenizer& tok, std::string context, std::string continuation, BosMode bos,
                 std::vector<int>* ctx, std::vector<int>* cont);

struct ChoiceScore {
  double ll = 0;         // sum of log p(continuation tokens | ...)
  bool greedy = false;   // every continuation token is the argmax at its position (lm-eval is_greedy)
  int n_tokens = 0;      // tokens scored
  bool truncated = false;
};

// Log-likelihood of each request, with lm-eval's truncation (tokens_loglik above). batched:
// the positions every request shares (the context) run once into a K/V cache, copied to one
// sequence per request, and the rest of all requests runs as one batch (right-padded; causal
// attention keeps the padding from reaching real positions). Equal to the unbatched scoring up
// to float rounding (ZeroShotTasks.BatchedEqualsUnbatched).
std::vector<ChoiceScore> score_requests(const Session& s, const std::vector<Request>& reqs, const ScoreOptions& o);

// lm-eval's multiple-choice decision: *pred = argmax(ll), *pred_norm = argmax(ll / len(choice)),
// len in characters (code points) of doc_to_choice's text without the target delimiter; ties
// go to the first choice (np.argmax).
void choose(const std::vector<ChoiceScore>& sc, const std::vector<std::string>& choices, int* pred, int* pred_norm);

struct Metric {
  std::string name;  // acc, acc_norm, perplexity
  double value = 0, se = 0;  // se: standard error
};

struct TaskResult {
  std::string name;
  int n = 0;
  std::vector<Metric> metrics;
  int truncated = 0;   // documents with a request cut to the window
  double seconds = 0;
  std::string note;
  std::vector<TaskResult> children;  // MMLU: the four groups, each with its subjects
  const Metric* metric(const std::string& name) const;
};

// lm-eval's mean_stderr: sample standard deviation (n - 1) / sqrt(n); 0 for n < 2.
double mean_stderr(const std::vector<double>& x);
// lm-eval's group aggregation (aggregate_subtask_metrics with weight_by_size: True, the MMLU
// groups' setting): each metric is the children's mean weighted by their sizes, its stderr
// lm-eval's pooled_sample_stderr of the children's stderrs.
TaskResult aggregate_group(const std::string& name, std::vector<TaskResult> children);
double pooled_sample_stderr(const std::vector<double>& stderrs, const std::vector<int>& sizes);

// One scored document, for --log-samples: (task, doc index, doc, scores, chosen, chosen by acc_norm).
using SampleSink = std::function<void(const std::string&, int, const TaskDoc&, const std::vector<ChoiceScore>&, int, int)>;
// A --log-samples line (JSON, no newline) for one document.
std::string sample_json_line(const std::string& task, int index, const TaskDoc& d, const std::vector<ChoiceScore>& sc,
                             int chosen, int chosen_norm);

// A file --log-samples wrote (its first line a JSON object with "task" and "doc"): what
// OutputPolicy::is_own_output recognises.
bool is_sample_log(const std::string& path);

// Scores every document of `t` and computes its metrics as lm-eval's YAML lists them: acc,
// acc_norm (PIQA, ARC, OpenBookQA, HellaSwag), perplexity (LAMBADA: exp(-mean log-likelihood)),
// with standard errors; MMLU per subject, per group and overall (aggregate_group).
TaskResult eval_task(const Session& s, const Task& t, const ScoreOptions& o, bool progress, const SampleSink& sink = {});

}  // namespace kt
