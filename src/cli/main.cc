// kurtail command line: one subcommand per job. Every error becomes one line on stderr
// ("kurtail: error: FILE-or-OPTION: problem"), exit 1 (128 + signal when interrupted); with
// --json the same text also goes to stdout as {"error": "..."} so a script reading the JSON
// sees the failure. CLI11's own parse errors are rephrased into that format.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string_view>

#include "cli/commands.h"
#include "util/blas_env.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/malloc_tuning.h"

namespace {

// Last line of defence: whatever a message holds (a name read from a file that some code
// path did not quote), what reaches the terminal is one line of safe text of bounded length.
// Printable ASCII passes as it is (backslashes too: the text may already hold quote()'s
// escapes); every other byte run goes through kt::printable, which keeps well-formed safe
// UTF-8 and writes the rest as \xNN.
constexpr size_t kMaxMessageBytes = 4096;
std::string one_line(std::string_view msg) {
  const std::string_view in = msg.substr(0, kMaxMessageBytes);
  std::string out;
  for (size_t i = 0; i < in.size();) {
    size_t j = i;
    while (j < in.size() && (unsigned char)in[j] >= 0x20 && (unsigned char)in[j] < 0x7f) j++;
    out.append(in.data() + i, j - i);
    i = j;
    while (j < in.size() && !((unsigned char)in[j] >= 0x20 && (unsigned char)in[j] < 0x7f)) j++;
    if (j > i) out += kt::printable(in.substr(i, j - i), SIZE_MAX);
    i = j;
  }
  if (msg.size() > in.size()) out += "...(message of " + std::to_string(msg.size()) + " bytes cut)";
  return out;
}

std::string subcommand_list(const CLI::App& app) {
  std::string s;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    s += (s.empty() ? "" : ", ") + sub->get_name();
  return s;
}

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// CLI11's parse error in kurtail's "--opt: problem" form.
std::string parse_error_text(const CLI::ParseError& e, const CLI::App& app, int argc, char** argv) {
  const std::string what = e.what();
  const auto subs = app.get_subcommands();
  const std::string help =
      subs.empty() ? "kurtail --help" : "kurtail " + subs.front()->get_name() + " --help";
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    std::vector<std::string> rest = app.remaining(/*recurse=*/true);
    const std::string first = rest.empty() ? what : rest.front();
    if (subs.empty()) return first + ": unknown subcommand (available: " + subcommand_list(app) + ")";
    return first + (starts_with(first, "-") ? ": unknown option" : ": unexpected argument") + " (see '" + help + "')";
  }
  if (dynamic_cast<const CLI::RequiredError*>(&e)) {
    if (subs.empty()) {
      if (argc > 1 && argv[1][0] != '-')
        return std::string(argv[1]) + ": unknown subcommand (available: " + subcommand_list(app) + ")";
      return "command line: a subcommand is required (available: " + subcommand_list(app) + ")";
    }
    const size_t k = what.find(" is required");
    if (k != std::string::npos && starts_with(what, "-")) return what.substr(0, k) + ": is required (see '" + help + "')";
  }
  if (dynamic_cast<const CLI::ConversionError*>(&e) && starts_with(what, "Could not convert: ")) {
    const std::string body = what.substr(std::strlen("Could not convert: "));
    const size_t eq = body.find(" = ");
    if (eq != std::string::npos) return body.substr(0, eq) + ": cannot read value '" + body.substr(eq + 3) + "'";
  }
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e)) {
    const size_t c = what.find(": ");
    if (c != std::string::npos && starts_with(what, "-")) {
      const std::string name = what.substr(0, c), rest = what.substr(c + 2);
      if (rest.find("missing") != std::string::npos) return name + ": missing value";
      if (starts_with(rest, "At Most")) return name + ": given more than once";
    }
  }
  // ValidationError (options.h: "--opt: problem") and CLI11's own name-first messages
  if (starts_with(what, "-")) return what;
  return "command line: " + what;
}

// --json given to the subcommand that ran (after a failed parse CLI11 may not have reached
// the flag yet, so the arguments are looked at too).
bool json_requested(const CLI::App& app, int argc, char** argv, bool parse_failed) {
  for (const CLI::App* sub : app.get_subcommands()) {
    const CLI::Option* o = sub->get_option_no_throw("--json");
    if (o && o->count() > 0) return true;
  }
  if (parse_failed)
    for (int i = 1; i < argc; i++)
      if (std::strcmp(argv[i], "--json") == 0) return true;
  return false;
}

// One line on stderr, and with --json the same text as a JSON object on stdout.
int report(const std::string& prefix, const std::string& msg, int code, bool json, int signo = 0) {
  const std::string line = one_line(msg);  // valid UTF-8 with no control bytes: dump() cannot throw
  std::fflush(stdout);
  std::fprintf(stderr, "kurtail: %s%s\n", prefix.c_str(), line.c_str());
  if (json) {
    nlohmann::json j = {{"error", line}};
    if (signo) j["signal"] = signo;
    std::cout << j.dump(2) << std::endl;
  }
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  kt::ensure_runtime_env(argc, argv);
  kt::fix_malloc_thresholds();
  CLI::App app{"kurtail: 4-bit weights, activations and KV cache for Llama-family models"};
  app.require_subcommand(1);
  kt::cli::register_eval(app);
  kt::cli::register_generate(app);
  kt::cli::register_quantize(app);
  kt::cli::register_analyze(app);
  kt::cli::register_run(app);
  kt::cli::register_bench(app);
  kt::cli::register_info(app);
  kt::cli::register_export(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    return report("error: ", parse_error_text(e, app, argc, argv), 1, json_requested(app, argc, argv, true));
  }
  const bool json = json_requested(app, argc, argv, false);
  kt::install_interrupt_handlers();
  try {
    return kt::cli::run_selected(app);
  } catch (const kt::Interrupted& e) {
    return report("", e.what(), 128 + e.signo, json, e.signo);
  } catch (const kt::Error& e) {
    return report("error: ", e.what(), 1, json);
  } catch (const std::bad_alloc&) {
    return report("error: ", "out of memory", 1, json);
  } catch (const std::exception& e) {
    return report("error: ", e.what(), 1, json);
  }
}
