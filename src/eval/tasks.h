// The zero-shot tasks and MMLU as lm-evaluation-harness builds them: each document becomes
// one (context, continuation) request per choice, exactly the strings lm-eval's task YAMLs
// and utils produce (docs/EVAL.md lists every prompt and where each comes from). Scoring is
// eval/zeroshot.h.
#pragma once
#include <array>
#include <string>
#include <utility>
#include <vector>

namespace kt {

// One log-likelihood request: log p(continuation | context). The continuation starts with the
// task's target_delimiter (" ").
struct Request {
  std::string context, continuation;
};

struct TaskDoc {
  std::vector<Request> requests;     // one per choice (LAMBADA: one)
  std::vector<std::string> choices;  // doc_to_choice, without the delimiter: acc_norm's lengths
  int gold = 0;
  std::string where;    // "FILE, line N": named by errors about this document
  std::string subject;  // MMLU: the subject (file name)
};

struct Task {
  std::string name;
  bool acc_norm = false;  // the YAML's metric_list has acc_norm
  bool lambada = false;   // output_type loglikelihood: acc = greedy match, perplexity
  std::vector<TaskDoc> docs;
  std::string note;  // a caveat printed with the results (HellaSwag's text form)
};

// The task names `--tasks` accepts, in the order "all" runs them.
const std::vector<std::string>& known_tasks();
// "piqa,arc_easy", "all", "paper6" (PIQA, WinoGrande, HellaSwag, ARC-Easy, ARC-Challenge,
// LAMBADA: QuaRot / FlatQuant's 6-task average) -> task names, duplicates dropped, order kept.
// Fails naming --tasks on an unknown name.
std::vector<std::string> expand_tasks(const std::string& list);
// The 57 MMLU subjects and their lm-eval group (stem, humanities, social_sciences, other),
// from lm_eval/tasks/mmlu/_generate_configs.py.
const std::vector<std::pair<std::string, std::string>>& mmlu_subjects();

// Loads task `name` from DIR (its lm-eval split, file names in docs/EVAL.md). limit > 0: only
// the first `limit` documents (MMLU: per subject, as lm-eval's --limit). num_fewshot: MMLU only
// (first n of dev, lm-eval's first_n sampler); the other tasks are zero-shot and refuse it.
Task load_task(const std::string& name, const std::string& dir, int limit, int num_fewshot = 0);

// --- the prompts, one builder per task (tests compare them with lm-eval's strings) ---
TaskDoc piqa_doc(const std::string& goal, const std::string& sol1, const std::string& sol2, int label);
// ARC and OpenBookQA: gold = position of answer_key among the labels (-1 if absent: the loader
// refuses the row). ARC's context is "Question: {stem}\nAnswer:", OpenBookQA's the bare stem.
TaskDoc arc_doc(const std::string& stem, const std::vector<std::string>& texts, const std::vector<std::string>& labels,
                const std::string& answer_key);
TaskDoc openbookqa_doc(const std::string& stem, const std::vector<std::string>& texts,
                       const std::vector<std::string>& labels, const std::string& answer_key);
TaskDoc boolq_doc(const std::string& passage, const std::string& question, bool label);
TaskDoc lambada_doc(const std::string& text);
// answer: 1 or 2. The sentence must hold '_' (the loader checks).
TaskDoc winogrande_doc(const std::string& sentence, const std::string& option1, const std::string& option2, int answer);
// lm-eval's hellaswag preprocess(): strip, " [title]" -> ". ", drop [..] tags, "  " -> " ".
std::string hellaswag_preprocess(const std::string& text);
// From llama.cpp's text form: first line "activity_label: ctx" (ctx = ctx_a + " " + ctx_b),
// then the endings. ctx_b.capitalize() is approximated (docs/EVAL.md says how and why).
TaskDoc hellaswag_doc(const std::string& label_and_ctx, const std::vector<std::string>& endings, int gold);
struct MmluRow {
  std::string question;
  std::array<std::string, 4> choices;
  int answer = 0;  // 0..3 (A..D)
};
// lm-eval's mmlu default template with the subject description, and `shots` (dev rows) before.
TaskDoc mmlu_doc(const std::string& subject, const MmluRow& row, const std::vector<MmluRow>& shots);

}  // namespace kt
