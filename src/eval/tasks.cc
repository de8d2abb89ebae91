#include "eval/tasks.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/bz2.h"
#include "io/csv.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

namespace {

// A task file of any of these formats is at most a few MB; a bound keeps a wrong path (a disk
// image) from being read whole.
constexpr size_t kMaxTaskBytes = size_t(512) << 20;

const std::vector<std::string> kPaper6 = {"piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge",
                                          "lambada_openai"};

std::string line_at(const std::string& path, int line) { return path + ", line " + std::to_string(line); }

// Python's str.strip() for ASCII whitespace.
std::string py_strip(const std::string& s) {
  const char* ws = " \t\n\r\v\f";
  size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  size_t b = s.find_last_not_of(ws);
  return s.substr(a, b - a + 1);
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t i = 0;
  for (;;) {
    size_t j = s.find(from, i);
    if (j == std::string::npos) break;
    out.append(s, i, j - i).append(to);
    i = j + from.size();
  }
  return out.append(s, i, std::string::npos);
}

// Each non-empty line of a JSONL file, parsed; fn(json, line number). Errors name FILE and line.
template <class Fn>
void for_each_jsonl(const std::string& path, Fn fn) {
  std::istringstream in(read_file(path, kMaxTaskBytes));
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    lineno++;
    if (line.empty() || line == "\r") continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      fail(path, "line " + std::to_string(lineno) + ": not valid JSON");
    }
    if (!j.is_object()) fail(path, "line " + std::to_string(lineno) + ": not a JSON object");
    if (!fn(j, lineno)) break;
  }
}

std::string jstr(const nlohmann::json& j, const char* key, const std::string& path, int line) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string())
    fail(path, "line " + std::to_string(line) + ": field '" + key + "' is missing or not a string");
  return it->get<std::string>();
}

// AI2 format (ARC, OpenBookQA): question.stem, question.choices[{text,label}], answerKey.
void ai2_fields(const nlohmann::json& j, const std::string& path, int line, std::string* stem,
                std::vector<std::string>* texts, std::vector<std::string>* labels, std::string* key) {
  auto q = j.find("question");
  if (q == j.end() || !q->is_object()) fail(path, "line " + std::to_string(line) + ": field 'question' is missing or not an object");
  *stem = jstr(*q, "stem", path, line);
  auto c = q->find("choices");
  if (c == q->end() || !c->is_array() || c->empty() || c->size() > 26)
    fail(path, "line " + std::to_string(line) + ": 'question.choices' is missing, empty or not a list of up to 26");
  for (const auto& ch : *c) {
    if (!ch.is_object()) fail(path, "line " + std::to_string(line) + ": a choice is not an object");
    texts->push_back(jstr(ch, "text", path, line));
    labels->push_back(jstr(ch, "label", path, line));
  }
  *key = jstr(j, "answerKey", path, line);
}

TaskDoc mc_doc(const std::string& context, const std::vector<std::string>& choices, int gold) {
  TaskDoc d;
  for (const auto& c : choices) d.requests.push_back({context, " " + c});  // target_delimiter " "
  d.choices = choices;
  d.gold = gold;
  return d;
}

std::string mmlu_text(const MmluRow& r) {
  return py_strip(r.question) + "\nA. " + r.choices[0] + "\nB. " + r.choices[1] + "\nC. " + r.choices[2] +
         "\nD. " + r.choices[3] + "\nAnswer:";
}

std::vector<MmluRow> read_mmlu_csv(const std::string& path, int limit, std::vector<int>* lines) {
  auto recs = parse_csv(read_file(path, kMaxTaskBytes), path);
  std::vector<MmluRow> rows;
  for (const auto& r : recs) {
    if (r.fields.size() != 6)
      fail(path, "line " + std::to_string(r.line) + ": " + std::to_string(r.fields.size()) +
                     " fields, expected 6 (question, A, B, C, D, answer)");
    MmluRow m;
    m.question = r.fields[0];
    for (int k = 0; k < 4; k++) m.choices[k] = r.fields[1 + k];
    const std::string& a = r.fields[5];
    if (a.size() != 1 || a[0] < 'A' || a[0] > 'D')
      fail(path, "line " + std::to_string(r.line) + ": answer " + quote(a) + " is not A, B, C or D");
    m.answer = a[0] - 'A';
    rows.push_back(std::move(m));
    if (lines) lines->push_back(r.line);
    if (limit > 0 && (int)rows.size() >= limit) break;
  }
  if (rows.empty()) fail(path, "no questions");
  return rows;
}

}  // namespace

const std::vector<std::string>& known_tasks() {
  static const std::vector<std::string> k = {"piqa",       "arc_easy",   "arc_challenge", "boolq", "lambada_openai",
                                             "openbookqa", "winogrande", "hellaswag",     "mmlu"};
  return k;
}

std::vector<std::string> expand_tasks(const std::string& list) {
  std::vector<std::string> out;
  auto add = [&](const std::string& t) {
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
  };
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = py_strip(item);
    if (item == "all") {
      for (const auto& t : known_tasks()) add(t);
    } else if (item == "paper6") {
      for (const auto& t : kPaper6) add(t);
    } else if (std::find(known_tasks().begin(), known_tasks().end(), item) != known_tasks().end()) {
      add(item);
    } else {
      std::string names;
      for (const auto& t : known_tasks()) names += t + ", ";
      fail("--tasks: unknown task " + quote(item) + " (known: " + names + "all, paper6)");
    }
  }
  if (out.empty()) fail("--tasks: no task named");
  return out;
}

const std::vector<std::pair<std::string, std::string>>& mmlu_subjects() {
  static const std::vector<std::pair<std::string, std::string>> s = {
      {"abstract_algebra", "stem"},
      {"anatomy", "stem"},
      {"astronomy", "stem"},
      {"business_ethics", "other"},
      {"clinical_knowledge", "other"},
      {"college_biology", "stem"},
      {"college_chemistry", "stem"},
      {"college_computer_science", "stem"},
      {"college_mathematics", "stem"},
      {"college_medicine", "other"},
      {"college_physics", "stem"},
      {"computer_security", "stem"},
      {"conceptual_physics", "stem"},
      {"econometrics", "social_sciences"},
      {"electrical_engineering", "stem"},
      {"elementary_mathematics", "stem"},
      {"formal_logic", "humanities"},
      {"global_facts", "other"},
      {"high_school_biology", "stem"},
      {"high_school_chemistry", "stem"},
      {"high_school_computer_science", "stem"},
      {"high_school_european_history", "humanities"},
      {"high_school_geography", "social_sciences"},
      {"high_school_government_and_politics", "social_sciences"},
      {"high_school_macroeconomics", "social_sciences"},
      {"high_school_mathematics", "stem"},
      {"high_school_microeconomics", "social_sciences"},
      {"high_school_physics", "stem"},
      {"high_school_psychology", "social_sciences"},
      {"high_school_statistics", "stem"},
      {"high_school_us_history", "humanities"},
      {"high_school_world_history", "humanities"},
      {"human_aging", "other"},
      {"human_sexuality", "social_sciences"},
      {"international_law", "humanities"},
      {"jurisprudence", "humanities"},
      {"logical_fallacies", "humanities"},
      {"machine_learning", "stem"},
      {"management", "other"},
      {"marketing", "other"},
      {"medical_genetics", "other"},
      {"miscellaneous", "other"},
      {"moral_disputes", "humanities"},
      {"moral_scenarios", "humanities"},
      {"nutrition", "other"},
      {"philosophy", "humanities"},
      {"prehistory", "humanities"},
      {"professional_accounting", "other"},
      {"professional_law", "humanities"},
      {"professional_medicine", "other"},
      {"professional_psychology", "social_sciences"},
      {"public_relations", "social_sciences"},
      {"security_studies", "social_sciences"},
      {"sociology", "social_sciences"},
      {"us_foreign_policy", "social_sciences"},
      {"virology", "other"},
      {"world_religions", "humanities"},
  };
  return s;
}

// ---- prompt builders ----

TaskDoc piqa_doc(const std::string& goal, const std::string& sol1, const std::string& sol2, int label) {
  return mc_doc("Question: " + goal + "\nAnswer:", {sol1, sol2}, label);
}

TaskDoc arc_doc(const std::string& stem, const std::vector<std::string>& texts, const std::vector<std::string>& labels,
                const std::string& answer_key) {
  int gold = (int)(std::find(labels.begin(), labels.end(), answer_key) - labels.begin());
  return mc_doc("Question: " + stem + "\nAnswer:", texts, gold < (int)labels.size() ? gold : -1);
}

TaskDoc openbookqa_doc(const std::string& stem, const std::vector<std::string>& texts,
                       const std::vector<std::string>& labels, const std::string& answer_key) {
  const std::string key = answer_key.substr(std::min(answer_key.size(), answer_key.find_first_not_of(" \t\n\r\v\f")));
  int gold = (int)(std::find(labels.begin(), labels.end(), key) - labels.begin());
  return mc_doc(stem, texts, gold < (int)labels.size() ? gold : -1);
}

TaskDoc boolq_doc(const std::string& passage, const std::string& question, bool label) {
  return mc_doc(passage + "\nQuestion: " + question + "?\nAnswer:", {"no", "yes"}, label ? 1 : 0);
}

TaskDoc lambada_doc(const std::string& text) {
  // doc_to_text: text.split(' ')[:-1]|join(' '); doc_to_target: ' ' + text.split(' ')[-1]
  const size_t sp = text.rfind(' ');
  TaskDoc d;
  const std::string ctx = sp == std::string::npos ? "" : text.substr(0, sp);
  const std::string word = sp == std::string::npos ? text : text.substr(sp + 1);
  d.requests.push_back({ctx, " " + word});
  d.choices = {word};
  d.gold = 0;
  return d;
}

TaskDoc winogrande_doc(const std::string& sentence, const std::string& option1, const std::string& option2,
                       int answer) {
  // partial evaluation: the context is the sentence up to '_' with the option, the
  // continuation (target_delimiter + the rest after '_', stripped) is the same for both
  const size_t idx = sentence.find('_');
  TaskDoc d;
  const std::string head = idx == std::string::npos ? sentence : sentence.substr(0, idx);
  const std::string rest = idx == std::string::npos ? "" : py_strip(sentence.substr(idx + 1));
  for (const auto& o : {option1, option2}) d.requests.push_back({head + o, " " + rest});
  d.choices = {head + option1, head + option2};  // lm-eval's doc_to_choice for this task
  d.gold = answer - 1;
  return d;
}

std::string hellaswag_preprocess(const std::string& text) {
  std::string t = replace_all(py_strip(text), " [title]", ". ");
  std::string no_tags;  // re.sub("\\[.*?\\]", "", t): '.' does not match a newline
  for (size_t i = 0; i < t.size();) {
    if (t[i] == '[') {
      size_t j = i + 1;
      while (j < t.size() && t[j] != ']' && t[j] != '\n') j++;
      if (j < t.size() && t[j] == ']') {
        i = j + 1;
        continue;
      }
    }
    no_tags += t[i++];
  }
  return replace_all(no_tags, "  ", " ");
}

TaskDoc hellaswag_doc(const std::string& label_and_ctx, const std::vector<std::string>& endings, int gold) {
  // lm-eval: preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()). The text form
  // has ctx = ctx_a + " " + ctx_b; ctx_b is the unfinished last sentence, which in ActivityNet
  // items starts lower-case after ctx_a's final ". ": upper-case that letter.
  std::string q = label_and_ctx;
  const size_t colon = q.find(": ");
  const size_t body = colon == std::string::npos ? 0 : colon + 2;
  const size_t dot = q.rfind(". ");
  if (dot != std::string::npos && dot >= body && dot + 2 < q.size() && q[dot + 2] >= 'a' && q[dot + 2] <= 'z')
    q[dot + 2] = (char)(q[dot + 2] - 'a' + 'A');
  std::vector<std::string> ch;
  for (const auto& e : endings) ch.push_back(hellaswag_preprocess(e));
  return mc_doc(hellaswag_preprocess(q), ch, gold);
}

TaskDoc mmlu_doc(const std::string& subject, const MmluRow& row, const std::vector<MmluRow>& shots) {
  std::string ctx = "The following are multiple choice questions (with answers) about " +
                    replace_all(subject, "_", " ") + ".\n\n";
  for (const auto& s : shots) ctx += mmlu_text(s) + " " + std::string(1, (char)('A' + s.answer)) + "\n\n";
  ctx += mmlu_text(row);
  TaskDoc d = mc_doc(ctx, {"A", "B", "C", "D"}, row.answer);
  d.subject = subject;
  return d;
}

// ---- loaders ----

namespace {

bool take(std::vector<TaskDoc>& docs, TaskDoc d, const std::string& where, int limit) {
  d.where = where;
  docs.push_back(std::move(d));
  return !(limit > 0 && (int)docs.size() >= limit);
}

void load_ai2(Task& t, const std::string& path, int limit, bool obqa) {
  for_each_jsonl(path, [&](const nlohmann::json& j, int line) {
    std::string stem, key;
    std::vector<std::string> texts, labels;
    ai2_fields(j, path, line, &stem, &texts, &labels, &key);
    TaskDoc d = obqa ? openbookqa_doc(stem, texts, labels, key) : arc_doc(stem, texts, labels, key);
    if (d.gold < 0) fail(path, "line " + std::to_string(line) + ": answerKey " + quote(key) + " is not one of the choice labels");
    return take(t.docs, std::move(d), line_at(path, line), limit);
  });
}

}  // namespace

Task load_task(const std::string& name, const std::string& dir, int limit, int num_fewshot) {
  Task t;
  t.name = name;
  if (num_fewshot > 0 && name != "mmlu")
    fail("--num-fewshot: " + name + " is scored zero-shot here (few-shot is implemented for mmlu only)");
  if (name == "piqa") {
    t.acc_norm = true;
    const std::string data = join_path(dir, "piqa/valid.jsonl"), labels = join_path(dir, "piqa/valid-labels.lst");
    std::istringstream lj(read_file(labels, kMaxTaskBytes));
    for_each_jsonl(data, [&](const nlohmann::json& j, int line) {
      std::string lab;
      if (!std::getline(lj, lab)) fail(labels, "fewer labels than items in " + data);
      if (!lab.empty() && lab.back() == '\r') lab.pop_back();
      if (lab != "0" && lab != "1") fail(labels, "line " + std::to_string(line) + ": label " + quote(lab) + " is not 0 or 1");
      TaskDoc d = piqa_doc(jstr(j, "goal", data, line), jstr(j, "sol1", data, line), jstr(j, "sol2", data, line), lab == "1");
      return take(t.docs, std::move(d), line_at(data, line), limit);
    });
  } else if (name == "arc_easy") {
    t.acc_norm = true;
    load_ai2(t, join_path(dir, "arc_easy/ARC-Easy-Test.jsonl"), limit, false);
  } else if (name == "arc_challenge") {
    t.acc_norm = true;
    load_ai2(t, join_path(dir, "arc_challenge/ARC-Challenge-Test.jsonl"), limit, false);
  } else if (name == "openbookqa") {
    t.acc_norm = true;
    load_ai2(t, join_path(dir, "openbookqa/test.jsonl"), limit, true);
  } else if (name == "boolq") {
    const std::string path = join_path(dir, "boolq/val.jsonl");
    for_each_jsonl(path, [&](const nlohmann::json& j, int line) {
      auto l = j.find("label");
      bool label;
      if (l != j.end() && l->is_boolean()) label = l->get<bool>();
      else if (l != j.end() && l->is_string() && (*l == "true" || *l == "false")) label = *l == "true";
      else if (l != j.end() && l->is_number_integer() && (*l == 0 || *l == 1)) label = *l == 1;
      else fail(path, "line " + std::to_string(line) + ": 'label' is not true/false (a boolean, \"true\"/\"false\" or 0/1)");
      TaskDoc d = boolq_doc(jstr(j, "passage", path, line), jstr(j, "question", path, line), label);
      return take(t.docs, std::move(d), line_at(path, line), limit);
    });
  } else if (name == "lambada_openai") {
    t.lambada = true;
    const std::string path = join_path(dir, "lambada_openai/lambada_test.jsonl");
    for_each_jsonl(path, [&](const nlohmann::json& j, int line) {
      std::string text = jstr(j, "text", path, line);
      if (text.empty() || text.back() == ' ') fail(path, "line " + std::to_string(line) + ": text is empty or ends with a space (no last word)");
      return take(t.docs, lambada_doc(text), line_at(path, line), limit);
    });
  } else if (name == "winogrande") {
    const std::string path = join_path(dir, "winogrande/winogrande_dev.jsonl");
    for_each_jsonl(path, [&](const nlohmann::json& j, int line) {
      std::string s = jstr(j, "sentence", path, line), a = jstr(j, "answer", path, line);
      if (s.find('_') == std::string::npos) fail(path, "line " + std::to_string(line) + ": sentence has no '_'");
      if (a != "1" && a != "2") fail(path, "line " + std::to_string(line) + ": answer " + quote(a) + " is not \"1\" or \"2\"");
      TaskDoc d = winogrande_doc(s, jstr(j, "option1", path, line), jstr(j, "option2", path, line), a == "1" ? 1 : 2);
      return take(t.docs, std::move(d), line_at(path, line), limit);
    });
  } else if (name == "hellaswag") {
    t.acc_norm = true;
    t.note = "HellaSwag from llama.cpp's text form: ctx_b's capitalisation reconstructed, not exact (docs/EVAL.md)";
    const std::string plain = join_path(dir, "hellaswag/hellaswag_val_full.txt");
    const std::string path = file_exists(plain) ? plain : plain + ".bz2";
    const std::string text = path == plain ? read_file(path, kMaxTaskBytes) : read_bz2_file(path, kMaxTaskBytes, kMaxTaskBytes);
    std::istringstream in(text);
    std::vector<std::string> lines;
    std::string l;
    int lineno = 0;
    for (;;) {
      lines.clear();
      const int first = lineno + 1;
      while ((int)lines.size() < 6 && std::getline(in, l)) {
        lineno++;
        if (!l.empty() && l.back() == '\r') l.pop_back();
        lines.push_back(l);
      }
      if (lines.empty() || (lines.size() == 1 && lines[0].empty())) break;
      if (lines.size() < 6)
        fail(path, "line " + std::to_string(first) + ": item cut short (" + std::to_string(lines.size()) +
                       " lines, expected 6: context, gold index, 4 endings)");
      if (lines[1].size() != 1 || lines[1][0] < '0' || lines[1][0] > '3')
        fail(path, "line " + std::to_string(first + 1) + ": gold " + quote(lines[1]) + " is not 0..3");
      TaskDoc d = hellaswag_doc(lines[0], {lines[2], lines[3], lines[4], lines[5]}, lines[1][0] - '0');
      if (!take(t.docs, std::move(d), line_at(path, first), limit)) break;
    }
  } else if (name == "mmlu") {
    if (num_fewshot > 5) fail("--num-fewshot: MMLU's dev split has 5 questions per subject");
    for (const auto& [subject, group] : mmlu_subjects()) {
      const std::string test = join_path(dir, "mmlu/test/" + subject + "_test.csv");
      std::vector<MmluRow> shots;
      if (num_fewshot > 0) {
        const std::string dev = join_path(dir, "mmlu/dev/" + subject + "_dev.csv");
        shots = read_mmlu_csv(dev, num_fewshot, nullptr);
        if ((int)shots.size() < num_fewshot)
          fail(dev, std::to_string(shots.size()) + " questions, fewer than --num-fewshot " + std::to_string(num_fewshot));
      }
      std::vector<int> lines;
      auto rows = read_mmlu_csv(test, limit, &lines);
      for (size_t i = 0; i < rows.size(); i++) {
        TaskDoc d = mmlu_doc(subject, rows[i], shots);
        d.where = line_at(test, lines[i]);
        t.docs.push_back(std::move(d));
      }
    }
  } else {
    fail("--tasks: unknown task " + quote(name));
  }
  if (t.docs.empty()) fail(dir, "task " + name + ": no documents");
  return t;
}

}  // namespace kt
