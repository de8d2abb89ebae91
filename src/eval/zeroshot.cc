#include "eval/zeroshot.h"

#include <algorithm>
#include <cmath>
#include <map>
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

// ---- lm-eval's tasks ----

const char* bos_name(BosMode b) { return b == BosMode::No ? "no" : b == BosMode::Yes ? "yes" : "auto"; }

namespace {

std::vector<int> encode_with(const Tokenizer& tok, const std::string& text, BosMode bos) {
  if (bos == BosMode::Auto) return tok.encode_for_model(text);
  std::vector<int> ids = tok.encode(text);
  if (bos == BosMode::Yes && tok.bos >= 0) ids.insert(ids.begin(), tok.bos);
  return ids;
}

// log_softmax(row)[target] and whether target is the row's argmax (first maximum, as torch).
double log_prob(const float* r, int V, int target, bool* is_argmax) {
  const float* mxp = std::max_element(r, r + V);
  const float mx = *mxp;
  double sum = 0;
  for (int j = 0; j < V; j++) sum += std::exp((double)r[j] - mx);
  *is_argmax = (int)(mxp - r) == target;
  return r[target] - (std::log(sum) + mx);
}

// One request as token ids, cut as lm-eval cuts it: whole = ctx + cont; the input is
// whole[start, end - 1), the last `scored` input positions predict the continuation.
struct Prepared {
  std::vector<int> whole;
  size_t start = 0, scored = 0;
  std::vector<int32_t> ids;  // the model's input
};

Prepared prepare(const Session& s, const Request& r, const ScoreOptions& o, size_t L) {
  std::vector<int> c, k;
  encode_pair(*s.model().tokenizer, r.context, r.continuation, o.bos, &c, &k);
  if (k.empty()) fail("continuation " + quote(r.continuation) + " tokenizes to nothing");
  Prepared p;
  p.whole = c;
  p.whole.insert(p.whole.end(), k.begin(), k.end());
  p.start = p.whole.size() > L + 1 ? p.whole.size() - (L + 1) : 0;
  p.ids.assign(p.whole.begin() + p.start, p.whole.end() - 1);
  p.scored = std::min(k.size(), p.ids.size());
  return p;
}

}  // namespace

void encode_pair(const Tokenizer& tok, std::string context, std::string continuation, BosMode bos,
                 std::vector<int>* ctx, std::vector<int>* cont) {
  const size_t keep = context.find_last_not_of(" \t\n\r\v\f");
  const size_t n_spaces = keep == std::string::npos ? context.size() : context.size() - keep - 1;
  if (n_spaces > 0) {
    continuation = context.substr(context.size() - n_spaces) + continuation;
    context.resize(context.size() - n_spaces);
  }
  if (context.empty()) {  // lm-eval: context_enc = [prefix_token_id], the continuation alone
    *ctx = {tok.bos >= 0 ? tok.bos : tok.eos};
    *cont = tok.encode(continuation);
    return;
  }
  std::vector<int> whole = encode_with(tok, context + continuation, bos);
  *ctx = encode_with(tok, context, bos);
  const size_t split = std::min(ctx->size(), whole.size());
  cont->assign(whole.begin() + split, whole.end());
}

std::vector<ChoiceScore> score_requests(const Session& s, const std::vector<Request>& reqs, const ScoreOptions& o) {
  const Model& m = s.model();
  const size_t L = (size_t)(o.max_len > 0 ? std::min(o.max_len, m.spec.max_pos) : m.spec.max_pos);
  const int V = m.spec.vocab;
  const int B = (int)reqs.size();
  std::vector<Prepared> P;
  for (const auto& r : reqs) P.push_back(prepare(s, r, o, L));
  std::vector<ChoiceScore> out(B);
  for (int i = 0; i < B; i++) {
    out[i].n_tokens = (int)P[i].scored;
    out[i].truncated = P[i].start > 0;
  }
  if (!o.batched || B == 0) {
    for (int i = 0; i < B; i++) {
      const Prepared& p = P[i];
      std::unique_ptr<KVCache> cache = s.new_quantized_cache(1, (int)p.ids.size());
      auto logits = forward(m, p.ids.data(), 1, (int)p.ids.size(), cache.get(), s.hooks());
      bool all = true;
      for (size_t q = p.ids.size() - p.scored; q < p.ids.size(); q++) {
        bool g;
        out[i].ll += log_prob(logits.data() + q * V, V, p.whole[p.start + q + 1], &g);
        all = all && g;
      }
      out[i].greedy = all;
    }
    return out;
  }
  // shared prefix: the longest common prefix of all inputs
  size_t pre = P[0].ids.size();
  for (int i = 1; i < B; i++) {
    size_t k = 0;
    const size_t n = std::min(pre, P[i].ids.size());
    while (k < n && P[i].ids[k] == P[0].ids[k]) k++;
    pre = k;
  }
  size_t T = 0;
  for (const auto& p : P) T = std::max(T, p.ids.size() - pre);
  KVCache cache = s.new_cache(B, (int)(pre + T));
  std::vector<float> head;  // logits of the shared positions [pre, V]
  if (pre > 0) {
    head = forward(m, P[0].ids.data(), 1, (int)pre, &cache, s.hooks());
    cache.broadcast_first_sequence((int)pre);
  }
  std::vector<float> tail;  // [B * T, V]
  if (T > 0) {
    std::vector<int32_t> batch(B * T);
    for (int i = 0; i < B; i++) {
      const auto& ids = P[i].ids;
      for (size_t t = 0; t < T; t++) {
        const size_t q = pre + t;
        batch[i * T + t] = q < ids.size() ? ids[q] : ids.back();  // padding after the real tokens
      }
    }
    tail = forward(m, batch.data(), B, (int)T, &cache, s.hooks());
  }
  for (int i = 0; i < B; i++) {
    const Prepared& p = P[i];
    bool all = true;
    for (size_t q = p.ids.size() - p.scored; q < p.ids.size(); q++) {
      const float* row = q < pre ? head.data() + q * V : tail.data() + (i * T + (q - pre)) * V;
      bool g;
      out[i].ll += log_prob(row, V, p.whole[p.start + q + 1], &g);
      all = all && g;
    }
    out[i].greedy = all;
  }
  return out;
}

void choose(const std::vector<ChoiceScore>& sc, const std::vector<std::string>& choices, int* pred, int* pred_norm) {
  double bl = -INFINITY, bn = -INFINITY;
  *pred = *pred_norm = 0;
  for (size_t c = 0; c < sc.size(); c++) {
    const double norm = sc[c].ll / (double)std::max<size_t>(1, utf8_chars(c < choices.size() ? choices[c] : ""));
    if (sc[c].ll > bl) bl = sc[c].ll, *pred = (int)c;
    if (norm > bn) bn = norm, *pred_norm = (int)c;
  }
}

const Metric* TaskResult::metric(const std::string& n) const {
  for (const auto& m : metrics)
    if (m.name == n) return &m;
  return nullptr;
}

double mean_stderr(const std::vector<double>& x) {
  const size_t n = x.size();
  if (n < 2) return 0;
  double mu = 0;
  for (double v : x) mu += v;
  mu /= n;
  double ss = 0;
  for (double v : x) ss += (v - mu) * (v - mu);
  return std::sqrt(ss / (n - 1)) / std::sqrt((double)n);
}

double pooled_sample_stderr(const std::vector<double>& se, const std::vector<int>& sizes) {
  double num = 0, total = 0;
  for (size_t i = 0; i < se.size(); i++) {
    num += (sizes[i] - 1) * se[i] * se[i] * sizes[i];
    total += sizes[i];
  }
  const double den = total - (double)se.size();
  if (den <= 0 || total <= 0) return 0;
  return std::sqrt(num / den / total);
}

TaskResult aggregate_group(const std::string& name, std::vector<TaskResult> children) {
  TaskResult g;
  g.name = name;
  for (const auto& c : children) {
    g.n += c.n;
    g.truncated += c.truncated;
    g.seconds += c.seconds;
  }
  if (!children.empty()) {
    for (const auto& m0 : children[0].metrics) {
      double sum = 0;
      std::vector<double> se;
      std::vector<int> sizes;
      for (const auto& c : children) {
        const Metric* m = c.metric(m0.name);
        if (!m) fail("aggregate_group: " + c.name + " has no " + m0.name);
        sum += m->value * c.n;
        se.push_back(m->se);
        sizes.push_back(c.n);
      }
      g.metrics.push_back({m0.name, g.n > 0 ? sum / g.n : 0, pooled_sample_stderr(se, sizes)});
    }
  }
  g.children = std::move(children);
  return g;
}

std::string sample_json_line(const std::string& task, int index, const TaskDoc& d, const std::vector<ChoiceScore>& sc,
                             int chosen, int chosen_norm) {
  nlohmann::json j;
  j["task"] = task;
  j["doc"] = index;
  if (!d.subject.empty()) j["subject"] = d.subject;
  j["where"] = d.where;
  std::vector<double> ll;
  std::vector<bool> greedy;
  std::vector<int> nt;
  for (const auto& c : sc) ll.push_back(c.ll), greedy.push_back(c.greedy), nt.push_back(c.n_tokens);
  j["loglikelihoods"] = ll;
  j["is_greedy"] = greedy;
  j["tokens"] = nt;
  j["chosen"] = chosen;
  if (chosen_norm >= 0) j["chosen_norm"] = chosen_norm;
  j["gold"] = d.gold;
  j["acc"] = sc.size() == 1 ? (sc[0].greedy ? 1 : 0) : (chosen == d.gold ? 1 : 0);
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool is_sample_log(const std::string& path) {
  try {
    std::string head = read_prefix(path, 1 << 16);
    const size_t nl = head.find('\n');
    if (nl == std::string::npos) return false;
    auto j = nlohmann::json::parse(head.substr(0, nl));
    return j.is_object() && j.contains("task") && j.contains("doc");
  } catch (...) {
    return false;
  }
}

namespace {

// Metrics of one set of documents (a task, or one MMLU subject) from per-document values.
TaskResult metrics_of(const std::string& name, const Task& t, const std::vector<double>& acc,
                      const std::vector<double>& acc_norm, const std::vector<double>& ll) {
  TaskResult r;
  r.name = name;
  r.n = (int)acc.size();
  auto mean = [](const std::vector<double>& x) {
    double s = 0;
    for (double v : x) s += v;
    return x.empty() ? 0.0 : s / x.size();
  };
  if (t.lambada) {
    // lm-eval: perplexity aggregation = exp(-mean(ll)); its stderr is bootstrapped there, here
    // the delta method: ppl * stderr(mean ll)
    const double ppl = std::exp(-mean(ll));
    r.metrics.push_back({"perplexity", ppl, ppl * mean_stderr(ll)});
  }
  r.metrics.push_back({"acc", mean(acc), mean_stderr(acc)});
  if (t.acc_norm) r.metrics.push_back({"acc_norm", mean(acc_norm), mean_stderr(acc_norm)});
  return r;
}

}  // namespace

TaskResult eval_task(const Session& s, const Task& t, const ScoreOptions& o, bool progress, const SampleSink& sink) {
  auto t0 = std::chrono::steady_clock::now();
  Progress prog(t.name, (int64_t)t.docs.size(), progress);
  std::vector<double> acc, acc_norm, ll;
  std::vector<int> truncated;
  int64_t toks = 0;
  for (size_t i = 0; i < t.docs.size(); i++) {
    const TaskDoc& d = t.docs[i];
    std::vector<ChoiceScore> sc;
    try {
      sc = score_requests(s, d.requests, o);
    } catch (const Interrupted&) {
      throw;
    } catch (const Error& e) {
      fail(d.where, e.what());
    }
    int best = 0, best_norm = 0;
    choose(sc, d.choices, &best, &best_norm);
    bool cut = false;
    for (const auto& c : sc) toks += c.n_tokens, cut = cut || c.truncated;
    if (t.lambada) {
      acc.push_back(sc[0].greedy ? 1 : 0);
      ll.push_back(sc[0].ll);
    } else {
      acc.push_back(best == d.gold ? 1 : 0);
      acc_norm.push_back(best_norm == d.gold ? 1 : 0);
    }
    truncated.push_back(cut);
    if (sink) sink(t.name, (int)i, d, sc, best, t.acc_norm ? best_norm : -1);
    prog.update((int64_t)i + 1, toks);
  }
  prog.finish();
  TaskResult r;
  if (t.name == "mmlu") {
    // per subject, then lm-eval's groups (stem, humanities, social_sciences, other), then mmlu
    // over the groups; both levels weighted by size
    std::map<std::string, std::vector<size_t>> by_subject;
    for (size_t i = 0; i < t.docs.size(); i++) by_subject[t.docs[i].subject].push_back(i);
    std::map<std::string, std::vector<TaskResult>> groups;
    for (const auto& [subject, group] : mmlu_subjects()) {
      auto it = by_subject.find(subject);
      if (it == by_subject.end()) continue;
      std::vector<double> a;
      int cut = 0;
      for (size_t i : it->second) a.push_back(acc[i]), cut += truncated[i];
      TaskResult sr = metrics_of(subject, t, a, {}, {});
      sr.truncated = cut;
      groups[group].push_back(std::move(sr));
    }
    std::vector<TaskResult> gs;
    for (auto& [g, subs] : groups) gs.push_back(aggregate_group(g, std::move(subs)));
    r = aggregate_group("mmlu", std::move(gs));
  } else {
    r = metrics_of(t.name, t, acc, acc_norm, ll);
    for (int c : truncated) r.truncated += c;
  }
  r.note = t.note;
  r.seconds = seconds_since(t0);
  return r;
}

}  // namespace kt
