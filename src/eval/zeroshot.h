// Zero-shot multiple choice by log-likelihood, as lm-evaluation-harness scores it:
// acc picks the choice with the highest summed log-likelihood of its continuation tokens;
// acc_norm divides by the continuation's length in characters. Standard errors are
// sqrt(p(1-p)/(n-1)) (sample standard deviation of the per-item 0/1 score over sqrt(n)).
#pragma once
#include <string>
#include <vector>

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

}  // namespace kt
