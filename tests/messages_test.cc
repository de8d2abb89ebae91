// Error messages are one line of safe text: untrusted names are escaped and capped where they
// are quoted (quote()), and main.cc escapes and caps the whole message as a last line of
// defence (text a library put there raw). With --json, the error is also a JSON object on
// stdout, for every subcommand that has --json, interrupted runs included.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kt {
namespace {

std::string model_dir_with(const std::string& tag, const std::string& config, const std::string& safetensors) {
  std::string dir = test::temp_dir(tag);
  std::ofstream(dir + "/config.json", std::ios::binary) << config;
  if (!safetensors.empty()) std::ofstream(dir + "/model.safetensors", std::ios::binary) << safetensors;
  return dir;
}

std::string tiny_config() { return read_file(test::tinyllama() + "/config.json", 1 << 20); }

// A safetensors file whose one tensor `name_json` (already JSON-escaped) claims 160 bytes of a
// 16-byte data section, so loading it fails with a message that quotes the name.
std::string safetensors_with_name(const std::string& name_json) {
  std::string header = "{\"" + name_json + "\": {\"dtype\": \"F32\", \"shape\": [40], \"data_offsets\": [0, 160]}}";
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; i++) out[i] = (char)(n >> (8 * i));
  return out + header + std::string(16, '\0');
}

bool has_control_bytes(const std::string& s) {
  for (size_t i = 0; i + 1 < s.size(); i++)  // the final '\n' ends the line
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] == 0x7f) return true;
  return false;
}

TEST(Messages, ControlCharactersInATensorNameAreEscaped) {
  // ESC[32m "kurtail: ok", a newline, a carriage return, BEL and U+202E (right-to-left override)
  std::string dir = model_dir_with("msg_ctl", tiny_config(),
                                   safetensors_with_name("x\\u001b[32mkurtail: ok\\n\\r\\u0007\\u202e"));
  test::CmdResult r = test::run_cli("info --model " + dir);
  test::expect_documented_error(r, "tensor 'x\\x1b[32mkurtail: ok\\x0a\\x0d\\x07\\xe2\\x80\\xae' data_offsets [0, 160)");
  EXPECT_FALSE(has_control_bytes(r.err)) << r.err;
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(Messages, AMegabyteNameGivesOneCappedLine) {
  std::string dir = model_dir_with("msg_big", tiny_config(), safetensors_with_name(std::string(1 << 20, 'A')));
  test::CmdResult r = test::run_cli("info --model " + dir);
  test::expect_documented_error(r, "AAAA...(1048576 bytes)' data_offsets [0, 160) out of range");
  EXPECT_LT(r.err.size(), 1000u);
  std::system(("rm -rf '" + dir + "'").c_str());
}

// Text that reaches a message unquoted (here: the "last read" of nlohmann's parse error, which
// passes bytes >= 0x80 through) is still escaped by main, and a huge message is cut.
TEST(Messages, MainEscapesAndCapsWhatNoCallerQuoted) {
  std::string dir = model_dir_with("msg_raw", "\xe2\x80\xae\xff\x9b[31m", "");
  test::CmdResult r = test::run_cli("info --model " + dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("config.json: "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("\xe2\x80\xae"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\xff'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find('\x9b'), std::string::npos) << r.err;
  std::system(("rm -rf '" + dir + "'").c_str());

  test::CmdResult big = test::run_cli("info --model /nonexistent-kurtail/" + std::string(20000, 'B'));
  EXPECT_EQ(big.code, 1);
  EXPECT_EQ(std::count(big.err.begin(), big.err.end(), '\n'), 1);
  EXPECT_LT(big.err.size(), 4400u);
  EXPECT_NE(big.err.find("...(message of "), std::string::npos) << big.err.substr(big.err.size() - 100);
}

// --json: the error is also {"error": "..."} on stdout (valid JSON, the same escaped text).
TEST(Messages, JsonErrorObjectOnStdoutForEverySubcommand) {
  const std::string missing = " --model /nonexistent-kurtail/m";
  for (const std::string& args : {"eval --json" + missing, "quantize --json --out /nonexistent-kurtail/q" + missing,
                                 "analyze --json" + missing, "bench --json" + missing, "info --json" + missing}) {
    SCOPED_TRACE(args);
    test::CmdResult r = test::run_cli(args);
    test::expect_documented_error(r, "/nonexistent-kurtail/m: no such file or directory");
    nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_TRUE(j.is_object());
    EXPECT_EQ(j["error"], "/nonexistent-kurtail/m: no such file or directory");
  }
  // a parse error, and an untrusted name: the JSON holds the escaped text and stays valid
  test::CmdResult p = test::run_cli("eval --json --ctx -1");
  test::expect_documented_error(p, "--ctx: -1 is out of range");
  EXPECT_EQ(nlohmann::json::parse(p.out)["error"], "--ctx: -1 is out of range (allowed: 0 or 2..16777216)");
  std::string dir = model_dir_with("msg_json", tiny_config(), safetensors_with_name("y\\u001b[31m"));
  test::CmdResult c = test::run_cli("info --json --model " + dir);
  EXPECT_EQ(c.code, 1);
  std::string e = nlohmann::json::parse(c.out)["error"];
  EXPECT_NE(e.find("tensor 'y\\x1b[31m'"), std::string::npos) << e;
  std::system(("rm -rf '" + dir + "'").c_str());
  // without --json stdout stays empty
  EXPECT_TRUE(test::run_cli("info" + missing).out.empty());
}

TEST(Messages, InterruptedJsonRunReportsTheSignal) {
  // PIQA in full takes well over a minute on the proxy model: SIGINT lands in the loop
  test::CmdResult r = test::run_cli("eval --task piqa --json -q", "timeout --preserve-status -s INT 4");
  ASSERT_EQ(r.code, 130) << r.err;
  EXPECT_EQ(r.err.rfind("kurtail: interrupted by SIGINT", 0), 0u) << r.err;
  ASSERT_TRUE(nlohmann::json::accept(r.out)) << "stdout: " << r.out << "\nstderr: " << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["signal"], 2);
  EXPECT_EQ(j["error"].get<std::string>().rfind("interrupted by SIGINT", 0), 0u) << r.out;
}

}  // namespace
}  // namespace kt
