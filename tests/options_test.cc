// Every option of every subcommand is range-checked when it is parsed (src/cli/options.h).
// The sweep reads each subcommand's --help, so an option added later is covered too: every
// value-taking option must show what it allows, and every out-of-range, non-finite, negative,
// malformed or unlisted value gives one "kurtail: error: --opt: ..." line and exit 1 before
// any model is opened. The issue's examples and CLI11's own parse errors are rows of
// docs/ERRORS.md, checked with expect_documented_error.
#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "test_util.h"

namespace kt {
namespace {

const char* kSubcommands[] = {"eval", "generate", "quantize", "analyze", "run", "bench", "info", "export-gguf"};

struct HelpOption {
  std::string name, type, allowed;  // allowed: the validator's description ("2..16", "(0, 1]", "a|b")
};

// "  --w INT:2..16=4             weight bits" -> {--w, INT, 2..16}
std::vector<HelpOption> help_options(const std::string& help) {
  std::vector<HelpOption> out;
  size_t value_options = 0;
  // the allowed values end at "=DEFAULT" or at the gap before the description (CLI11 leaves
  // a single space after a default that fills the column)
  static const std::regex re(
      R"(^  (?:-\w,)?(-{1,2}[\w-]+) (INT|UINT|FLOAT|TEXT)(?::([^=]*?))?(?: \.\.\.)?(?: REQUIRED)?(?:=\S*(?: |$)|  |$))");
  std::istringstream in(help);
  for (std::string line; std::getline(in, line);) {
    std::smatch m;
    if (std::regex_search(line, m, re)) out.push_back({m[1], m[2], m[3]});
    static const std::regex any(R"(^  (?:-\w,)?-{1,2}[\w-]+ (INT|UINT|FLOAT|TEXT))");
    if (std::regex_search(line, any)) value_options++;
  }
  EXPECT_EQ(out.size(), value_options) << "an option line the sweep could not read:\n" << help;
  return out;
}

// The one-line option error: exit 1, one stderr line "kurtail: error: OPT: ...", nothing on stdout.
void expect_option_error(const std::string& args, const std::string& opt) {
  SCOPED_TRACE(args);
  test::CmdResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("kurtail: error: " + opt + ": ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// Values outside "LO..HI" / "0 or LO..HI" (INT), "[a, b]" / "(a, b)" (FLOAT), "a|b" (TEXT).
std::vector<std::string> bad_values(const HelpOption& o) {
  std::vector<std::string> v;
  std::smatch m;
  if (o.type == "INT") {
    static const std::regex r(R"(^(0 or )?(-?\d+)\.\.(-?\d+)(?: or (\d+))?$)");
    EXPECT_TRUE(std::regex_match(o.allowed, m, r)) << o.name << " shows no integer range: '" << o.allowed << "'";
    if (m.empty()) return v;
    const long long lo = std::stoll(m[2]), hi = std::stoll(m[3]);
    const bool zero_ok = m[1].matched || lo == 0;
    if (!(zero_ok && lo - 1 == 0)) v.push_back(std::to_string(lo - 1));
    v.push_back(std::to_string(hi + 1));
    if (m[4].matched) v.push_back(std::to_string(std::stoll(m[4]) + 1));  // "2..8 or 16": 9 and 17
    v.push_back("-1");
    v.push_back("-2147483649");
    v.push_back("1.5");
    v.push_back("0x10");
    v.push_back("abc");
    v.push_back("''");
  } else if (o.type == "UINT") {
    EXPECT_FALSE(o.allowed.empty()) << o.name;
    for (const char* s : {"-1", "18446744073709551616", "abc", "1e3", "''"}) v.push_back(s);
  } else if (o.type == "FLOAT") {
    static const std::regex r(R"(^([\[(])(-?[\d.e+-]+), (-?[\d.e+-]+)([\])])$)");
    EXPECT_TRUE(std::regex_match(o.allowed, m, r)) << o.name << " shows no real range: '" << o.allowed << "'";
    if (m.empty()) return v;
    const double lo = std::stod(m[2]), hi = std::stod(m[3]);
    v.push_back(m[1] == "(" ? m[2].str() : std::to_string(lo - 1));
    v.push_back(m[4] == ")" ? m[3].str() : std::to_string(hi + 1));
    for (const char* s : {"nan", "-nan", "NaN", "inf", "-inf", "1e999", "abc", "0x1p-2", "''"}) v.push_back(s);
  } else if (!o.allowed.empty()) {  // TEXT with a list of choices
    v.push_back("nosuch");
    v.push_back("''");
    v.push_back("\"$(printf 'a\\033[31m\\nkurtail: ok')\"");  // control bytes: escaped in the one line
  } else {  // paths and names: only emptiness is refused at parse time
    v.push_back("''");
  }
  return v;
}

TEST(Options, EveryOptionOfEverySubcommandIsRangeChecked) {
  int checked = 0;
  for (const char* sub : kSubcommands) {
    test::CmdResult h = test::run_cli(std::string(sub) + " --help");
    ASSERT_EQ(h.code, 0) << h.err;
    auto opts = help_options(h.out);
    ASSERT_GE(opts.size(), 1u) << h.out;
    for (const HelpOption& o : opts) {
      if (o.name == "--prompt") continue;  // free text: an empty prompt is a valid prompt
      // quantize/export-gguf need --out: give a valid one so the option under test is what fails
      std::string base = std::string(sub) + " " +
                         ((std::string(sub) == "quantize" || std::string(sub) == "export-gguf") && o.name != "--out"
                              ? "--out /nonexistent-kurtail/x "
                              : "");
      for (const std::string& bad : bad_values(o)) {
        expect_option_error(base + o.name + " " + bad, o.name);
        checked++;
      }
    }
  }
  EXPECT_GT(checked, 250);
}

TEST(Options, HelpListsRanges) {
  test::CmdResult q = test::run_cli("quantize --help");
  EXPECT_EQ(q.code, 0);
  for (const char* s : {"--w INT:2..8 or 16=4", "--a-clip FLOAT:(0, 1]=0.9", "--kt-lr FLOAT:(0, 10]",
                        "--method TEXT:rtn|quarot|kurtail", "--w-group INT:0..16777216", "--seed UINT:0..2^64-1"})
    EXPECT_NE(q.out.find(s), std::string::npos) << s << "\n" << q.out;
  test::CmdResult e = test::run_cli("eval --help");
  EXPECT_EQ(e.code, 0);
  EXPECT_NE(e.out.find("--ctx INT:0 or 2..16777216"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("--kernels TEXT:auto|real|fake=auto"), std::string::npos) << e.out;
  for (const char* cmd : {"run --help", "bench --help", "eval --help"}) {  // declared once, on all three
    test::CmdResult h = test::run_cli(cmd);
    EXPECT_NE(h.out.find("--k-dot TEXT:f32|q8=f32"), std::string::npos) << cmd << "\n" << h.out;
  }
  test::CmdResult top = test::run_cli("--help");
  EXPECT_EQ(top.code, 0);
  EXPECT_NE(top.out.find("quantize"), std::string::npos);
}

// Valid values still parse to the same numbers (decimal only: "010" is ten, not octal eight).
TEST(Options, ValidValuesAreAccepted) {
  test::CmdResult r = test::run_cli("eval --ctx 010 --max-windows 1 --json -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"ctx\": 10"), std::string::npos) << r.out;
  r = test::run_cli("eval --ctx +16 --max-windows=1 --json -q --batch 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"ctx\": 16"), std::string::npos) << r.out;
}

// The issue's examples, one documented line each.
TEST(Options, IssueExamples) {
  const std::string out = "--out /nonexistent-kurtail/x ";
  test::expect_documented_error(test::run_cli("quantize " + out + "--w 1"), "--w: 1 is out of range (allowed: 2..8 or 16)");
  test::expect_documented_error(test::run_cli("quantize " + out + "--w 0"), "--w: 0 is out of range (allowed: 2..8 or 16)");
  test::expect_documented_error(test::run_cli("quantize " + out + "--a 17"), "--a: 17 is out of range (allowed: 2..8 or 16)");
  test::expect_documented_error(test::run_cli("eval --ctx -1"), "--ctx: -1 is out of range (allowed: 0 or 2..16777216)");
  test::expect_documented_error(test::run_cli("generate -n -1"), "-n: -1 is out of range (allowed: 0..16777216)");
  test::expect_documented_error(test::run_cli("eval --max-windows -1"),
                                "--max-windows: -1 is out of range (allowed: 0..16777216)");
  test::expect_documented_error(test::run_cli("generate --temperature nan"),
                                "--temperature: 'nan' is not a finite number (allowed: [0, 100])");
  test::expect_documented_error(test::run_cli("quantize " + out + "--a-clip nan"),
                                "--a-clip: 'nan' is not a finite number (allowed: (0, 1])");
  test::expect_documented_error(test::run_cli("quantize " + out + "--kt-lr inf"),
                                "--kt-lr: 'inf' is not a finite number (allowed: (0, 10])");
  test::expect_documented_error(test::run_cli("eval --kernels fast"), "--kernels: 'fast' is not one of auto, real, fake");
  test::expect_documented_error(test::run_cli("bench --k-dot q4"), "--k-dot: 'q4' is not one of f32, q8");
  test::expect_documented_error(test::run_cli("run --seed -1"),
                                "--seed: '-1' is not an integer in 0..18446744073709551615");
  test::expect_documented_error(test::run_cli("quantize --out ''"), "--out: must not be empty");
  test::expect_documented_error(test::run_cli("bench --configs fp32,w3a3"),
                                "--configs: 'w3a3' is not one of fp32, w8a8, w4a8, w4a4");
}

// Checks that need the model run right after it is opened, before any work or output.
TEST(Options, ModelDependentChecks) {
  std::string dir = test::temp_dir("opts");
  test::expect_documented_error(test::run_cli("quantize --out " + dir + "/q --w-group 128"),
                                "--w-group: 128 does not divide the model's ffn (intermediate) size 704");
  test::expect_documented_error(test::run_cli("quantize --out " + dir + "/q --w-group 96"),
                                "--w-group: 96 does not divide the model's hidden size 256");
  test::expect_documented_error(test::run_cli("quantize --out " + dir + "/q --kv-group 24"),
                                "--kv-group: 24 does not divide the model's head_dim 32");
  test::expect_documented_error(test::run_cli("quantize --out " + dir + "/q --truncate-layers 9"),
                                "--truncate-layers: 9 exceeds the model's 8 layers");
  test::expect_documented_error(test::run_cli("analyze --layer 8"),
                                "--layer: 8 is out of range for the model's layer count 8 (allowed: 0..7)");
  test::expect_documented_error(test::run_cli("quantize --out " + dir + "/q --seqlen 4096"),
                                "--seqlen: 4096 exceeds the model's maximum context of 512");
  EXPECT_FALSE(file_exists(dir + "/q"));
  std::system(("rm -rf '" + dir + "'").c_str());
}

// CLI11's own errors (exit codes 104..114 before) come out in kurtail's format, exit 1.
TEST(Options, ParseErrorsAreOneKurtailLine) {
  test::expect_documented_error(test::run_cli("eval --nosuch"), "--nosuch: unknown option (see 'kurtail eval --help')");
  test::expect_documented_error(test::run_cli("eval stray"), "stray: unexpected argument (see 'kurtail eval --help')");
  test::expect_documented_error(test::run_cli("eval --ctx"), "--ctx: missing value");
  test::expect_documented_error(test::run_cli("eval --ctx abc"),
                                "--ctx: 'abc' is not an integer (allowed: 0 or 2..16777216)");
  test::expect_documented_error(test::run_cli("eval --ctx 16 --ctx 32"), "--ctx: given more than once");
  test::expect_documented_error(test::run_cli("eval --json=maybe"), "--json: cannot read value 'maybe'");
  test::expect_documented_error(test::run_cli("quantize"), "--out: is required (see 'kurtail quantize --help')");
  test::expect_documented_error(test::run_cli("nosuch"), "nosuch: unknown subcommand (available: eval, generate");
  test::expect_documented_error(test::run_cli(""), "command line: a subcommand is required (available: eval");
}

}  // namespace
}  // namespace kt
