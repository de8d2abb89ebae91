#include "eval/zeroshot.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/progress.h"

namespace kt {

std::vector<MCItem> load_piqa(const std::string& tasks_dir, int limit) {
  std::string data = join_path(tasks_dir, "piqa/valid.jsonl"), labels = join_path(tasks_dir, "piqa/valid-labels.lst");
  std::istringstream dj(read_file(data, kMaxTextBytes)), lj(read_file(labels, kMaxTextBytes));
  std::vector<MCItem> items;
  std::string line, lab;
  int lineno = 0;
  while (std::getline(dj, line)) {
    lineno++;
    if (line.empty()) continue;
    if (!std::getline(lj, lab)) fail(labels, "fewer labels than items in " + data);
    MCItem it;
    try {
      auto j = nlohmann::json::parse(line);
      // (appends rather than "literal" + string&&: g++ 12 warns falsely about the latter)
      it.context = std::string("Question: ").append(j.at("goal").get<std::string>()).append("\nAnswer:");
      it.choices = {std::string(" ").append(j.at("sol1").get<std::string>()),
                    std::string(" ").append(j.at("sol2").get<std::string>())};
    } catch (const nlohmann::json::exception& e) {
      fail(data, "line " + std::to_string(lineno) + ": " + e.what());
    }
    if (lab != "0" && lab != "1") fail(labels, "label on line " + std::to_string(lineno) + " is not 0 or 1");
    it.label = lab == "1";
    it.where = data + ", line " + std::to_string(lineno);
    items.push_back(std::move(it));
    if (limit > 0 && (int)items.size() >= limit) break;
  }
  if (items.empty()) fail(data, "no items");
  return items;
}

double tokens_loglik(const Session& s, const std::vector<int>& ctx, const std::vector<int>& cont, int max_len,
                     int* n_tokens, bool* truncated) {
  const Model& m = s.model();
  if (ctx.empty() || cont.empty()) fail("tokens_loglik: empty context or continuation");
  const size_t L = (size_t)(max_len > 0 ? std::min(max_len, m.spec.max_pos) : m.spec.max_pos);
  // lm-eval: inp = (context_enc + continuation_enc)[-(max_length + 1):][:-1]; the logits of
  // the continuation are the last len(continuation_enc) positions of inp.
  std::vector<int> whole(ctx);
  whole.insert(whole.end(), cont.begin(), cont.end());
  const size_t start = whole.size() > L + 1 ? whole.size() - (L + 1) : 0;
  std::vector<int32_t> ids(whole.begin() + start, whole.end() - 1);
  const size_t scored = std::min(cont.size(), ids.size());  // < cont.size() only if cont alone exceeds L
  if (truncated) *truncated = start > 0;
  std::unique_ptr<KVCache> cache = s.new_quantized_cache(1, (int)ids.size());  // null: fp32 K/V, no cache
  auto logits = forward(m, ids.data(), 1, (int)ids.size(), cache.get(), s.hooks());
  const int V = m.spec.vocab;
  double ll = 0;
  for (size_t p = ids.size() - scored; p < ids.size(); p++) {  // position p predicts whole[start + p + 1]
    const float* r = logits.data() + p * V;
    float mx = *std::max_element(r, r + V);
    double s = 0;
    for (int j = 0; j < V; j++) s += std::exp((double)r[j] - mx);
    ll += r[whole[start + p + 1]] - (std::log(s) + mx);
  }
  if (n_tokens) *n_tokens = (int)scored;
  return ll;
}

double continuation_loglik(const Session& s, const std::string& context, const std::string& continuation,
                           int* n_tokens, int max_len, bool* truncated) {
  const Tokenizer& tok = *s.model().tokenizer;
  auto ctx = tok.encode_for_model(context);
  auto whole = tok.encode_for_model(context + continuation);
  size_t split = std::min(ctx.size(), whole.size());
  if (split == 0) {  // no context: condition on BOS (or EOS) like lm-eval's empty-context rule
    whole.insert(whole.begin(), tok.bos >= 0 ? tok.bos : tok.eos);
    split = 1;
  }
  if (whole.size() <= split) fail("continuation " + quote(continuation) + " tokenizes to nothing");
  std::vector<int> c(whole.begin(), whole.begin() + split), k(whole.begin() + split, whole.end());
  return tokens_loglik(s, c, k, max_len, n_tokens, truncated);
}

namespace {
size_t utf8_chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}
}  // namespace

MCResult eval_multiple_choice(const Session& s, const std::vector<MCItem>& items, const std::string& task,
                              bool progress, int max_len) {
  auto t0 = std::chrono::steady_clock::now();
  Progress prog(task, (int64_t)items.size(), progress);
  int correct = 0, correct_norm = 0, truncated = 0;
  int64_t toks = 0;
  for (size_t i = 0; i < items.size(); i++) {
    const MCItem& it = items[i];
    int best = 0, best_norm = 0;
    double bl = -INFINITY, bn = -INFINITY;
    bool cut = false;
    for (size_t c = 0; c < it.choices.size(); c++) {
      int nt = 0;
      bool tr = false;
      double ll;
      try {
        ll = continuation_loglik(s, it.context, it.choices[c], &nt, max_len, &tr);
      } catch (const Interrupted&) {
        throw;
      } catch (const Error& e) {
        if (it.where.empty()) throw;
        fail(it.where, "choice " + std::to_string(c + 1) + ": " + e.what());
      }
      cut = cut || tr;
      toks += nt;
      // lm-eval normalises by the length of the choice text (without the delimiter)
      double norm = ll / std::max<size_t>(1, utf8_chars(it.choices[c].substr(1)));
      if (ll > bl) bl = ll, best = (int)c;
      if (norm > bn) bn = norm, best_norm = (int)c;
    }
    truncated += cut;
    correct += best == it.label;
    correct_norm += best_norm == it.label;
    prog.update((int64_t)i + 1, toks);
  }
  prog.finish();
  MCResult r;
  r.task = task;
  r.n = (int)items.size();
  r.truncated = truncated;
  r.acc = (double)correct / r.n;
  r.acc_norm = (double)correct_norm / r.n;
  auto se = [&](double p) { return r.n > 1 ? std::sqrt(p * (1 - p) / (r.n - 1)) : 0.0; };
  r.acc_stderr = se(r.acc);
  r.acc_norm_stderr = se(r.acc_norm);
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace kt
