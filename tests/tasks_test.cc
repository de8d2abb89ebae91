// lm-eval's tasks: for one document of each task, the prompt and continuations lm-eval builds
// (written out here by hand from its task YAMLs and utils, docs/EVAL.md), WinoGrande's partial
// scoring, LAMBADA's greedy match, acc_norm, MMLU 5-shot, the group aggregation, the batched
// scoring against the unbatched one, and bad task files.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "eval/tasks.h"
#include "eval/zeroshot.h"
#include "io/bz2.h"
#include "io/csv.h"
#include "model/forward.h"
#include "quant/recipe.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

std::string tasks() { return test::data() + "/tasks"; }

void expect_mc(const TaskDoc& d, const std::string& ctx, const std::vector<std::string>& conts, int gold) {
  ASSERT_EQ(d.requests.size(), conts.size());
  for (size_t i = 0; i < conts.size(); i++) {
    EXPECT_EQ(d.requests[i].context, ctx) << "choice " << i;
    EXPECT_EQ(d.requests[i].continuation, conts[i]) << "choice " << i;
  }
  EXPECT_EQ(d.gold, gold);
}

// ---- prompts: the first document of each split, as lm-eval builds it ----

TEST(TaskPrompts, Piqa) {
  // piqa.yaml: doc_to_text "Question: {{goal}}\nAnswer:", doc_to_choice [sol1, sol2], delimiter " "
  Task t = load_task("piqa", tasks(), 1);
  const std::string tail = " will also need to supply it with a water bottle and a food dish.";
  expect_mc(t.docs[0], "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:",
            {" Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you" + tail,
             " Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you" + tail},
            0);
  EXPECT_TRUE(t.acc_norm);
  EXPECT_EQ(load_task("piqa", tasks(), 0).docs.size(), 1838u);
}

TEST(TaskPrompts, ArcEasyAndNumericLabels) {
  // arc_easy.yaml: "Question: {{question}}\nAnswer:", choices.text, gold choices.label.index(answerKey)
  Task t = load_task("arc_easy", tasks(), 1);
  expect_mc(t.docs[0], "Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:",
            {" Sunlight is the source of energy for nearly all ecosystems.",
             " Most ecosystems are found on land instead of in water.", " Carbon dioxide is more available than other gases.",
             " The producers in all ecosystems are plants."},
            0);
  TaskDoc d = arc_doc("Q?", {"a", "b", "c"}, {"1", "2", "3"}, "3");
  EXPECT_EQ(d.gold, 2);
  EXPECT_EQ(arc_doc("Q?", {"a", "b"}, {"A", "B"}, "C").gold, -1);
  EXPECT_EQ(load_task("arc_easy", tasks(), 0).docs.size(), 2376u);
  EXPECT_EQ(load_task("arc_challenge", tasks(), 0).docs.size(), 1172u);
}

TEST(TaskPrompts, BoolQ) {
  // boolq default.yaml: "{{passage}}\nQuestion: {{question}}?\nAnswer:", choices ["no", "yes"], label 1 = true
  Task t = load_task("boolq", tasks(), 1);
  const TaskDoc& d = t.docs[0];
  const std::string& ctx = d.requests[0].context;
  EXPECT_EQ(ctx.rfind("Ethanol fuel -- All biomass goes through at least some of these steps", 0), 0u);
  const std::string end = "producing ethanol from corn uses much less petroleum than producing gasoline."
                          "\nQuestion: does ethanol take more energy make that produces?\nAnswer:";
  ASSERT_GT(ctx.size(), end.size());
  EXPECT_EQ(ctx.substr(ctx.size() - end.size()), end);
  expect_mc(d, ctx, {" no", " yes"}, 0);  // "label": "false"
  EXPECT_FALSE(t.acc_norm);
}

TEST(TaskPrompts, Lambada) {
  // lambada_openai.yaml: "{{text.split(' ')[:-1]|join(' ')}}", target "{{' '+text.split(' ')[-1]}}"
  Task t = load_task("lambada_openai", tasks(), 1);
  ASSERT_EQ(t.docs[0].requests.size(), 1u);
  const Request& r = t.docs[0].requests[0];
  EXPECT_EQ(r.continuation, " signs");
  const std::string end = "his mouth curved in a confident grin, I don't care about";
  EXPECT_EQ(r.context.substr(r.context.size() - end.size()), end);
  EXPECT_EQ(r.context.rfind("In my palm is a clear stone, and inside it is a small ivory statuette. A guardian angel.\n\n\"Figured", 0), 0u);
  EXPECT_TRUE(t.lambada);
  TaskDoc one = lambada_doc("word");
  EXPECT_EQ(one.requests[0].context, "");
  EXPECT_EQ(one.requests[0].continuation, " word");
}

TEST(TaskPrompts, OpenBookQa) {
  // openbookqa.yaml: doc_to_text question_stem (no "Question:"), gold choices.label.index(answerKey.lstrip())
  Task t = load_task("openbookqa", tasks(), 1);
  const std::string& ctx = t.docs[0].requests[0].context;
  EXPECT_EQ(ctx, "A person wants to start saving money so that they can afford a nice vacation at the end of the year. "
                 "After looking over their budget and expenses, they decide the best way to save money is to");
  EXPECT_EQ(t.docs[0].requests[0].continuation, " make more phone calls");
  EXPECT_EQ(t.docs[0].gold, 1);  // answerKey B
  EXPECT_EQ(openbookqa_doc("s", {"x", "y"}, {"A", "B"}, " B").gold, 1);
  EXPECT_EQ(load_task("openbookqa", tasks(), 0).docs.size(), 500u);
}

TEST(TaskPrompts, WinograndePartialScoring) {
  // preprocess_winogrande.py: contexts sentence[:idx] + option, target sentence[idx+1:].strip(),
  // requests (context, " " + target): the context varies, the continuation is fixed
  Task t = load_task("winogrande", tasks(), 1);
  const TaskDoc& d = t.docs[0];
  ASSERT_EQ(d.requests.size(), 2u);
  EXPECT_EQ(d.requests[0].context, "Sarah was a much better surgeon than Maria so Sarah");
  EXPECT_EQ(d.requests[1].context, "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(d.requests[0].continuation, " always got the easier cases.");
  EXPECT_EQ(d.requests[1].continuation, " always got the easier cases.");
  EXPECT_EQ(d.gold, 1);  // answer "2"
  TaskDoc e = winogrande_doc("_ went home  ", "Ann", "Bob", 1);
  EXPECT_EQ(e.requests[0].context, "Ann");
  EXPECT_EQ(e.requests[0].continuation, " went home");
  EXPECT_EQ(load_task("winogrande", tasks(), 0).docs.size(), 1267u);
}

TEST(TaskPrompts, HellaSwagFromTheTextForm) {
  // utils.py: query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()); the
  // text form holds ctx = "A man is sitting on a roof. he"; ctx_b "he" -> "He"
  Task t = load_task("hellaswag", tasks(), 1);
  expect_mc(t.docs[0], "Roof shingle removal: A man is sitting on a roof. He",
            {" is using wrap to wrap a pair of skis.", " is ripping level tiles off.", " is holding a rubik's cube.",
             " starts pulling up roofing on a roof."},
            3);
  // preprocess: strip, " [title]" -> ". ", [..] removed, "  " -> " " once (left to right)
  EXPECT_EQ(hellaswag_preprocess("  Visit a site like [www.kiddio.org] to find [title] x  y   z [header] "),
            "Visit a site like to find. x y  z ");
  EXPECT_EQ(load_task("hellaswag", tasks(), 0).docs.size(), 10042u);
}

TEST(TaskPrompts, MmluZeroShot) {
  // _default_template_yaml + description "The following are multiple choice questions (with
  // answers) about {subject with spaces}.\n\n"; choices A..D after the delimiter " "
  Task t = load_task("mmlu", tasks(), 1);
  ASSERT_EQ(t.docs.size(), 57u);  // --limit 1: one per subject
  expect_mc(t.docs[0],
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
            "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
            "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:",
            {" A", " B", " C", " D"}, 1);
  EXPECT_EQ(t.docs[0].subject, "abstract_algebra");
  EXPECT_EQ(load_task("mmlu", tasks(), 0).docs.size(), 14042u);
}

TEST(TaskPrompts, MmluFiveShot) {
  // fewshot_split dev, sampler first_n: each example doc_to_text + " " + letter, joined and
  // followed by "\n\n" (fewshot_delimiter), after the description
  Task t = load_task("mmlu", tasks(), 1, 5);
  const std::string tf = "A. True, True\nB. False, False\nC. True, False\nD. False, True\nAnswer:";
  const std::string want =
      "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
      "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
      "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
      "subgroups of G then HK is a subgroup of G.\n" + tf + " B\n\n"
      "Statement 1 | Every element of a group generates a cyclic subgroup of the group. Statement 2 | The symmetric "
      "group S_10 has 10 elements.\n" + tf + " C\n\n"
      "Statement 1| Every function from a finite set onto itself must be one to one. Statement 2 | Every subgroup of "
      "an abelian group is abelian.\n" + tf + " A\n\n"
      "Find the characteristic of the ring 2Z.\nA. 0\nB. 3\nC. 12\nD. 30\nAnswer: A\n\n"
      "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\n"
      "A. 0\nB. 4\nC. 2\nD. 6\nAnswer:";
  EXPECT_EQ(t.docs[0].requests[0].context, want);
  EXPECT_EQ(t.docs[0].requests[3].continuation, " D");
}

TEST(TaskPrompts, TaskLists) {
  EXPECT_EQ(expand_tasks("paper6"),
            (std::vector<std::string>{"piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge", "lambada_openai"}));
  EXPECT_EQ(expand_tasks("all").size(), 9u);
  EXPECT_EQ(expand_tasks("mmlu,piqa,mmlu"), (std::vector<std::string>{"mmlu", "piqa"}));
  EXPECT_THROW(expand_tasks("piqa,nope"), Error);
  EXPECT_THROW(load_task("piqa", tasks(), 1, 5), Error);  // few-shot is MMLU's only
  EXPECT_EQ(mmlu_subjects().size(), 57u);
}

// ---- metrics ----

TEST(TaskMetrics, AccNormDividesByCharactersWithoutTheDelimiter) {
  auto sc = [](double a, double b) {
    std::vector<ChoiceScore> v(2);
    v[0].ll = a, v[1].ll = b;
    return v;
  };
  int p, pn;
  choose(sc(-10, -12), {"ab", "abcdef"}, &p, &pn);  // -5 vs -2
  EXPECT_EQ(p, 0);
  EXPECT_EQ(pn, 1);
  // lengths 3, 2: -1 vs -1.1 -> 0; with the delimiter counted (4, 3): -0.75 vs -0.733 -> 1
  choose(sc(-3, -2.2), {"abc", "ab"}, &p, &pn);
  EXPECT_EQ(pn, 0);
  // characters, not bytes: "é" is one character (two bytes): -1.5 vs -1.0 -> 1 (bytes: -0.75 -> 0)
  choose(sc(-1.5, -2.0), {"\xc3\xa9", "ab"}, &p, &pn);
  EXPECT_EQ(pn, 1);
  choose(sc(-2, -2), {"a", "b"}, &p, &pn);  // ties: the first (np.argmax)
  EXPECT_EQ(p, 0);
}

TEST(TaskMetrics, StderrAndGroupAggregation) {
  EXPECT_DOUBLE_EQ(mean_stderr({1, 0, 1, 1}), 0.25);  // sample sd 0.5 / sqrt(4)
  // lm-eval's own test (tests/test_metrics.py): sizes 20, 40, 100 weighted by size -> 0.3375
  auto child = [](const std::string& n, int size, double acc, double se) {
    TaskResult r;
    r.name = n;
    r.n = size;
    r.metrics = {{"acc", acc, se}};
    return r;
  };
  TaskResult g = aggregate_group("g", {child("a", 20, 0.3, 0.1), child("b", 40, 0.2, 0.1), child("c", 100, 0.4, 0.1)});
  EXPECT_DOUBLE_EQ(g.metric("acc")->value, 0.3375);
  EXPECT_EQ(g.n, 160);
  // pooled_sample_stderr of three 0/1 sets (40/100, 30/60, 20/80 ones), computed by hand with
  // lm-eval's formula: 0.030811801125666036; the stderr of the concatenation is 0.0313153
  std::vector<double> a(100, 0), b(60, 0), c(80, 0);
  std::fill(a.begin(), a.begin() + 40, 1.0), std::fill(b.begin(), b.begin() + 30, 1.0), std::fill(c.begin(), c.begin() + 20, 1.0);
  TaskResult h = aggregate_group("h", {child("a", 100, 0.4, mean_stderr(a)), child("b", 60, 0.5, mean_stderr(b)),
                                       child("c", 80, 0.25, mean_stderr(c))});
  EXPECT_NEAR(h.metric("acc")->se, 0.030811801125666036, 1e-12);
  EXPECT_NEAR(h.metric("acc")->value, 0.375, 1e-12);  // micro: 90 of 240
}

// ---- scoring on the proxy model ----

std::vector<TaskDoc> mixed_docs() {
  std::vector<TaskDoc> docs;
  for (const char* name : {"piqa", "winogrande", "arc_challenge", "lambada_openai", "hellaswag", "mmlu"}) {
    Task t = load_task(name, tasks(), 1, std::string(name) == "mmlu" ? 1 : 0);
    docs.push_back(t.docs[0]);
  }
  return docs;
}

// tol: relative, per choice. The forward's float rounding depends on the batch shape (OpenBLAS
// takes another path for one row than for many), so batched and unbatched agree to ~1e-6 in
// FP; under 4-bit activation quantization such differences can move a value across a rounding
// boundary, so a fake-quantized A4 model agrees only to ~1e-3 (lm-eval's batches differ alike).
void expect_batched_equals_unbatched(const Session& s, int max_len, double tol = 1e-4) {
  for (BosMode bos : {BosMode::No, BosMode::Yes}) {
    ScoreOptions b, u;
    b.bos = u.bos = bos;
    b.max_len = u.max_len = max_len;
    u.batched = false;
    for (const TaskDoc& d : mixed_docs()) {
      auto x = score_requests(s, d.requests, b), y = score_requests(s, d.requests, u);
      ASSERT_EQ(x.size(), y.size());
      for (size_t i = 0; i < x.size(); i++) {
        EXPECT_NEAR(x[i].ll, y[i].ll, tol * std::max(1.0, std::fabs(y[i].ll))) << d.where << " choice " << i;
        if (tol <= 1e-4) {
          EXPECT_EQ(x[i].greedy, y[i].greedy) << d.where;
        }
        EXPECT_EQ(x[i].n_tokens, y[i].n_tokens);
        EXPECT_EQ(x[i].truncated, y[i].truncated);
      }
    }
  }
}

TEST(ZeroShotTasks, BatchedEqualsUnbatched) {
  auto m = Model::open(test::tinyllama());
  expect_batched_equals_unbatched(*m, 0);
  expect_batched_equals_unbatched(*m, 24);  // most documents cut to the window
}

TEST(ZeroShotTasks, BatchedEqualsUnbatchedQuantized) {
  auto m = Model::open(test::tinyllama());
  QuantizeOptions o = test::quantize_for_test(*m, "quarot", 4, 4, 4);
  Session s(*m, o.recipe);  // fake quantization: W4A4, K/V quantized in the hooks
  expect_batched_equals_unbatched(s, 0, 5e-3);
  // K/V kept in the int4 cache: the shared context's codes, scales and zero points are copied
  auto f = Model::open(test::tinyllama());
  Recipe r;
  r.set_bits(16, 16, 4, f->spec.head_dim);
  OnlineCaps cache;
  cache.cache_quantizes_kv = true;
  Session real(*f, r, cache);
  ASSERT_TRUE(real.quantizes_kv_cache());
  expect_batched_equals_unbatched(real, 0);
}

TEST(ZeroShotTasks, AutoBosMatchesTheSingleRequestScorer) {
  // with the tokenizer's BOS (auto) and no trailing space, score_requests and the older
  // continuation_loglik are the same computation; the truncation rule is that one's (tested
  // in zeroshot_truncation_test)
  auto m = Model::open(test::tinyllama());
  ScoreOptions o;
  o.bos = BosMode::Auto;
  for (int L : {0, 20}) {
    o.max_len = L;
    Task t = load_task("piqa", tasks(), 3);
    for (const auto& d : t.docs) {
      auto sc = score_requests(*m, d.requests, o);
      for (size_t i = 0; i < sc.size(); i++) {
        int n = 0;
        bool tr = false;
        double ll = continuation_loglik(*m, d.requests[i].context, d.requests[i].continuation, &n, L, &tr);
        EXPECT_NEAR(sc[i].ll, ll, 1e-4 * std::fabs(ll));
        EXPECT_EQ(sc[i].n_tokens, n);
        EXPECT_EQ(sc[i].truncated, tr);
      }
    }
  }
}

TEST(ZeroShotTasks, TrailingWhitespaceMovesToTheContinuation) {
  auto m = Model::open(test::tinyllama());
  const Tokenizer& tok = *m->tokenizer;
  std::vector<int> c1, k1, c2, k2;
  encode_pair(tok, "The answer is ", "yes", BosMode::No, &c1, &k1);
  encode_pair(tok, "The answer is", " yes", BosMode::No, &c2, &k2);
  EXPECT_EQ(c1, c2);
  EXPECT_EQ(k1, k2);
  EXPECT_EQ(c1, tok.encode("The answer is"));
  std::vector<int> whole = tok.encode("The answer is yes");
  EXPECT_EQ(k1, std::vector<int>(whole.begin() + c1.size(), whole.end()));
  encode_pair(tok, "The answer is", " yes", BosMode::Yes, &c2, &k2);
  ASSERT_GE(tok.bos, 0);
  EXPECT_EQ(c2.front(), tok.bos);
  EXPECT_EQ(c2.size(), c1.size() + 1);
  EXPECT_EQ(k2, k1);
}

TEST(ZeroShotTasks, LambadaGreedyMatchAndPerplexity) {
  auto m = Model::open(test::tinyllama());
  const Tokenizer& tok = *m->tokenizer;
  const std::string ctx = "The Linux kernel documentation describes the";
  std::vector<int32_t> ids;
  for (int t : tok.encode(ctx)) ids.push_back(t);
  auto logits = forward(*m, ids.data(), 1, (int)ids.size(), nullptr, nullptr);
  const int V = m->spec.vocab;
  const float* last = logits.data() + (ids.size() - 1) * V;
  const int best = (int)(std::max_element(last, last + V) - last);
  const std::string word = tok.piece(ids.back(), best);  // the model's greedy next token as text
  ASSERT_FALSE(word.empty());
  std::vector<int> c, k;
  encode_pair(tok, ctx, word, BosMode::No, &c, &k);
  ASSERT_EQ(k, std::vector<int>{best}) << "the greedy token does not round-trip: " << word;
  Task t;
  t.name = "lambada_openai";
  t.lambada = true;
  TaskDoc hit, miss;
  hit.requests = {{ctx, word}}, hit.choices = {word};
  miss.requests = {{ctx, " zebra"}}, miss.choices = {"zebra"};
  t.docs = {hit, miss};
  ScoreOptions o;
  auto a = score_requests(*m, hit.requests, o), b = score_requests(*m, miss.requests, o);
  EXPECT_TRUE(a[0].greedy);
  EXPECT_FALSE(b[0].greedy);
  TaskResult r = eval_task(*m, t, o, false);
  EXPECT_DOUBLE_EQ(r.metric("acc")->value, 0.5);
  EXPECT_NEAR(r.metric("perplexity")->value, std::exp(-(a[0].ll + b[0].ll) / 2), 1e-9);
}

TEST(ZeroShotTasks, MmluGroupsAreWeightedBySize) {
  auto m = Model::open(test::tinyllama());
  Task t = load_task("mmlu", tasks(), 2);
  std::vector<std::string> lines;
  TaskResult r = eval_task(*m, t, ScoreOptions{}, false,
                           [&](const std::string& task, int i, const TaskDoc& d, const std::vector<ChoiceScore>& sc,
                               int ch, int chn) { lines.push_back(sample_json_line(task, i, d, sc, ch, chn)); });
  ASSERT_EQ(r.children.size(), 4u);
  EXPECT_EQ(r.children[0].name, "humanities");
  EXPECT_EQ(r.children[3].name, "stem");
  EXPECT_EQ(r.n, 114);
  int correct = 0, subjects = 0;
  for (const auto& l : lines) correct += nlohmann::json::parse(l)["acc"].get<int>();
  for (const auto& g : r.children) subjects += (int)g.children.size();
  EXPECT_EQ(subjects, 57);
  EXPECT_NEAR(r.metric("acc")->value, correct / 114.0, 1e-12);  // micro over all documents
  EXPECT_EQ(r.children[3].n, 2 * 19);                         // 19 STEM subjects in lm-eval's map
}

// ---- files ----

TEST(TaskFiles, CsvIsRfc4180) {
  auto r = parse_csv("a,\"b, c\",\"say \"\"hi\"\"\"\r\n\"two\nlines\",x\n\nlast,", "f.csv");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].fields, (std::vector<std::string>{"a", "b, c", "say \"hi\""}));
  EXPECT_EQ(r[1].fields, (std::vector<std::string>{"two\nlines", "x"}));
  EXPECT_EQ(r[1].line, 2);
  EXPECT_EQ(r[2].fields, (std::vector<std::string>{"last", ""}));
  EXPECT_EQ(r[2].line, 5);
  try {
    parse_csv("a,b\n\"open,c\n", "f.csv");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "f.csv: line 2: quoted field not closed before the end of the file");
  }
  EXPECT_THROW(parse_csv("\"a\"b,c\n", "f.csv"), Error);
}

std::string expect_load_error(const std::string& task, const std::string& dir) {
  try {
    load_task(task, dir, 0);
  } catch (const Error& e) {
    std::string w = e.what();
    EXPECT_EQ(w.find('\n'), std::string::npos);
    return w;
  }
  ADD_FAILURE() << task << " loaded";
  return "";
}

TEST(TaskFiles, BadFilesNameTheFileAndLine) {
  const std::string dir = test::temp_dir("tasks");
  namespace fs = std::filesystem;
  for (const char* sub : {"piqa", "arc_easy", "winogrande", "hellaswag", "mmlu/test", "boolq"}) fs::create_directories(dir + "/" + sub);
  // missing file
  std::string e = expect_load_error("openbookqa", dir);
  EXPECT_NE(e.find(dir + "/openbookqa/test.jsonl"), std::string::npos) << e;
  // malformed row
  write_file_atomic(dir + "/piqa/valid.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n{\"goal\": \"g\", \"sol1\n");
  write_file_atomic(dir + "/piqa/valid-labels.lst", "0\n1\n");
  e = expect_load_error("piqa", dir);
  EXPECT_EQ(e, dir + "/piqa/valid.jsonl: line 2: not valid JSON");
  // bad label
  write_file_atomic(dir + "/piqa/valid.jsonl", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\"}\n");
  write_file_atomic(dir + "/piqa/valid-labels.lst", "2\n");
  e = expect_load_error("piqa", dir);
  EXPECT_EQ(e, dir + "/piqa/valid-labels.lst: line 1: label '2' is not 0 or 1");
  write_file_atomic(dir + "/arc_easy/ARC-Easy-Test.jsonl",
                    "{\"question\": {\"stem\": \"s\", \"choices\": [{\"text\": \"a\", \"label\": \"A\"}]}, \"answerKey\": \"Z\"}\n");
  e = expect_load_error("arc_easy", dir);
  EXPECT_EQ(e, dir + "/arc_easy/ARC-Easy-Test.jsonl: line 1: answerKey 'Z' is not one of the choice labels");
  write_file_atomic(dir + "/winogrande/winogrande_dev.jsonl",
                    "{\"sentence\": \"no blank\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"1\"}\n");
  e = expect_load_error("winogrande", dir);
  EXPECT_EQ(e, dir + "/winogrande/winogrande_dev.jsonl: line 1: sentence has no '_'");
  write_file_atomic(dir + "/boolq/val.jsonl", "{\"question\": \"q\", \"passage\": \"p\", \"label\": \"maybe\"}\n");
  e = expect_load_error("boolq", dir);
  EXPECT_NE(e.find("val.jsonl: line 1: 'label' is not true/false"), std::string::npos) << e;
  write_file_atomic(dir + "/hellaswag/hellaswag_val_full.txt", "ctx\n7\na\nb\nc\nd\n");
  e = expect_load_error("hellaswag", dir);
  EXPECT_EQ(e, dir + "/hellaswag/hellaswag_val_full.txt: line 2: gold '7' is not 0..3");
  write_file_atomic(dir + "/hellaswag/hellaswag_val_full.txt", "ctx\n1\na\nb\n");
  e = expect_load_error("hellaswag", dir);
  EXPECT_NE(e.find("hellaswag_val_full.txt: line 1: item cut short (4 lines"), std::string::npos) << e;
  fs::remove(dir + "/hellaswag/hellaswag_val_full.txt");
  write_file_atomic(dir + "/hellaswag/hellaswag_val_full.txt.bz2", "BZh9 not really");
  e = expect_load_error("hellaswag", dir);
  EXPECT_NE(e.find("hellaswag_val_full.txt.bz2: corrupt bzip2 data"), std::string::npos) << e;
  write_file_atomic(dir + "/mmlu/test/abstract_algebra_test.csv", "q,a,b,c,d,A\nq2,a,b,c,d,E\n");
  e = expect_load_error("mmlu", dir);
  EXPECT_EQ(e, dir + "/mmlu/test/abstract_algebra_test.csv: line 2: answer 'E' is not A, B, C or D");
  write_file_atomic(dir + "/mmlu/test/abstract_algebra_test.csv", "q,a,b,c,d\n");
  e = expect_load_error("mmlu", dir);
  EXPECT_EQ(e, dir + "/mmlu/test/abstract_algebra_test.csv: line 1: 5 fields, expected 6 (question, A, B, C, D, answer)");
}

// ---- the command ----

TEST(TaskCli, TableJsonAndSampleLog) {
  const std::string log = test::temp_dir("tasks-cli") + "/samples.jsonl";
  test::CmdResult r = test::run_cli("eval --tasks piqa,winogrande,lambada_openai --limit 4 --json -q --log-samples " + log);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["bos"], "no");
  EXPECT_EQ(j["tasks"]["piqa"]["n"], 4);
  EXPECT_TRUE(j["tasks"]["piqa"].contains("acc_norm_stderr"));
  EXPECT_FALSE(j["tasks"]["winogrande"].contains("acc_norm"));
  EXPECT_TRUE(j["tasks"]["lambada_openai"].contains("perplexity"));
  std::string text = read_file(log, 1 << 20);
  int n = 0;
  for (size_t p = 0; (p = text.find('\n', p)) != std::string::npos; p++) n++;
  EXPECT_EQ(n, 12);
  auto first = nlohmann::json::parse(text.substr(0, text.find('\n')));
  EXPECT_EQ(first["task"], "piqa");
  EXPECT_EQ(first["loglikelihoods"].size(), 2u);
  // the log exists now: a second run refuses to overwrite it
  test::CmdResult again = test::run_cli("eval --tasks piqa --limit 1 -q --log-samples " + log);
  EXPECT_EQ(again.code, 1);
  EXPECT_NE(again.err.find("already exists (pass --force to replace it)"), std::string::npos) << again.err;
  test::CmdResult forced = test::run_cli("eval --tasks piqa --limit 1 -q --force --log-samples " + log);
  EXPECT_EQ(forced.code, 0) << forced.err;
  EXPECT_EQ(nlohmann::json::parse(read_file(log, 1 << 20))["doc"], 0);
  // the table
  test::CmdResult t = test::run_cli("eval --tasks mmlu --limit 1 --num-fewshot 5 -q");
  ASSERT_EQ(t.code, 0) << t.err;
  for (const char* s : {"| mmlu ", " - humanities ", " - social_sciences ", " - stem ", "bos: no", "num_fewshot 5",
                        "mean over documents (lm-eval weight_by_size: True)"})
    EXPECT_NE(t.out.find(s), std::string::npos) << s << "\n" << t.out;
  test::CmdResult bad = test::run_cli("eval --tasks piqa --num-fewshot 5 --limit 1 -q");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("--num-fewshot: piqa is scored zero-shot here"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace kt
