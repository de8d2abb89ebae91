// Bad input through the real CLI: one clear error line naming the file and the problem,
// exit code 1, no crash. (docs/ERRORS.md lists these rows.)
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "model_factory.h"
#include "test_util.h"

namespace kt {
namespace {

// A model directory whose model.safetensors is `bytes` (config + tokenizer from tinyllama-8m).
std::string model_with_safetensors(const std::string& bytes) {
  std::string dir = test::temp_dir("bad");
  write_file_atomic(dir + "/config.json", read_file(test::tinyllama() + "/config.json", SIZE_MAX));
  symlink((test::tinyllama() + "/tokenizer.model").c_str(), (dir + "/tokenizer.model").c_str());
  write_file_atomic(dir + "/model.safetensors", bytes);
  return dir;
}

std::string st_with_header(const std::string& header, size_t data_bytes) {
  std::string out;
  uint64_t hl = header.size();
  out.append((const char*)&hl, 8);
  out += header;
  out.append(data_bytes, '\0');
  return out;
}

void expect_one_line_error(const test::CmdResult& r, const std::string& must_contain) {
  EXPECT_NE(r.err.find("kurtail: error: "), std::string::npos) << r.err;
  test::expect_documented_error(r, must_contain, 1);
}

std::string eval_args(const std::string& model) { return "eval -q --max-windows 1 --ctx 64 --model '" + model + "'"; }

TEST(BadInput, TruncatedSafetensors) {
  std::string real = read_file(test::tinyllama() + "/model.safetensors", SIZE_MAX);
  auto r = test::run_cli(eval_args(model_with_safetensors(real.substr(0, 4))));
  expect_one_line_error(r, "truncated safetensors file");
  // Cut inside the data section: the header is intact but offsets point past the end.
  auto dir = model_with_safetensors(real.substr(0, real.size() / 2));
  r = test::run_cli(eval_args(dir));
  expect_one_line_error(r, "model.safetensors: tensor '");
  EXPECT_NE(r.err.find("out of range"), std::string::npos) << r.err;
}

TEST(BadInput, HeaderLengthLargerThanFile) {
  std::string b(16, '\0');
  uint64_t hl = 1ull << 40;
  std::memcpy(b.data(), &hl, 8);
  expect_one_line_error(test::run_cli(eval_args(model_with_safetensors(b))), "header length 1099511627776 is larger than the file");
}

TEST(BadInput, OffsetsOutOfRange) {
  auto st = st_with_header(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,160]}})", 16);
  expect_one_line_error(test::run_cli(eval_args(model_with_safetensors(st))), "data_offsets [0, 160) out of range");
}

TEST(BadInput, OverlappingOffsets) {
  auto st = st_with_header(
      R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"y":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 24);
  expect_one_line_error(test::run_cli(eval_args(model_with_safetensors(st))), "tensor data ranges overlap");
}

TEST(BadInput, UnknownDtype) {
  auto st = st_with_header(R"({"x":{"dtype":"Q9","shape":[4],"data_offsets":[0,4]}})", 4);
  expect_one_line_error(test::run_cli(eval_args(model_with_safetensors(st))), "unknown dtype \"Q9\"");
}

TEST(BadInput, ShapeConfigMismatch) {
  test::RandomModelOptions o;
  std::string dir = test::make_random_model(o);
  // Claim a different hidden size in config.json than the tensors have.
  std::string cfg = read_file(dir + "/config.json", SIZE_MAX);
  cfg.replace(cfg.find("\"hidden_size\": 64"), 17, "\"hidden_size\": 128");
  write_file_atomic(dir + "/config.json", cfg);
  expect_one_line_error(test::run_cli(eval_args(dir)), "but config.json implies [8192, 128]");
}

TEST(BadInput, MissingTokenizer) {
  test::RandomModelOptions o;
  std::string dir = test::make_random_model(o);
  unlink((dir + "/tokenizer.model").c_str());
  expect_one_line_error(test::run_cli(eval_args(dir)), "missing tokenizer");
}

TEST(BadInput, EmptyText) {
  std::string dir = test::temp_dir("txt");
  write_file_atomic(dir + "/empty.txt", "  \n\n");
  expect_one_line_error(test::run_cli("eval -q --text '" + dir + "/empty.txt'"), "empty.txt: text is empty");
}

TEST(BadInput, CtxBeyondModelMaximum) {
  expect_one_line_error(test::run_cli("eval -q --ctx 4096"), "--ctx 4096 exceeds the model's maximum context of 512");
}

TEST(BadInput, MissingModelAndBadJson) {
  expect_one_line_error(test::run_cli("eval -q --model /nonexistent/model"), "/nonexistent/model: no such file");
  test::RandomModelOptions o;
  std::string dir = test::make_random_model(o);
  write_file_atomic(dir + "/config.json", "{\"hidden_size\": ");
  expect_one_line_error(test::run_cli(eval_args(dir)), "config.json: not valid JSON");
}

TEST(BadInput, TruncatedLlama2cCheckpoint) {
  std::string dir = test::temp_dir("l2c");
  std::string real = read_file(test::data() + "/models/aidreams260K/aidreams260K.bin", SIZE_MAX);
  write_file_atomic(dir + "/m.bin", real.substr(0, real.size() - 100));
  expect_one_line_error(test::run_cli("generate --model '" + dir + "/m.bin' -n 2"), "but its header implies");
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

TEST(Cli, QuantizeMethodDispatchAndUnknownMethod) {
  auto r = test::run_cli("quantize --method nosuch --out /tmp/never_written_kurtail");
  expect_one_line_error(r, "--method: 'nosuch' is not one of rtn, quarot");
  EXPECT_FALSE(file_exists("/tmp/never_written_kurtail"));
  std::string out = test::temp_dir("cli") + "/q";
  r = test::run_cli("quantize -q --method smoothrot-all --w 16 --a 16 --kv 16 --nsamples 2 --seqlen 64 --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  std::string rec = read_file(out + "/recipe.json", SIZE_MAX);
  EXPECT_NE(rec.find("\"online_hadamard_inputs\": true"), std::string::npos);
  EXPECT_NE(rec.find("\"r1\": false"), std::string::npos);
  EXPECT_NE(rec.find("\"r4\": true"), std::string::npos);
  // existing output is not overwritten without --force
  r = test::run_cli("quantize -q --method rtn --w 16 --a 16 --kv 16 --out " + out);
  expect_one_line_error(r, "already exists (pass --force to replace it)");
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

TEST(Cli, RunAndBenchOnRealKernels) {
  std::string out = test::temp_dir("run") + "/q";
  auto r = test::run_cli("quantize -q --method quarot --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("run --model " + out + " --prompt 'The kernel' -n 8");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("The kernel", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), std::string("The kernel\n").size());
  EXPECT_NE(r.err.find("int kernels"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("int4 KV cache"), std::string::npos) << r.err;
  // llama-bench's tests: pp and tg at each depth, for each thread count, one row each
  r = test::run_cli("bench --reps 2 -p 16 -n 4 -d 0,8 -t 1,2 --configs fp32,w4a4 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["rows"].size(), 16u);  // 2 configs x 2 thread counts x 2 depths x {pp, tg}
  for (auto& row : j["rows"]) {
    EXPECT_GT(row["avg_ts"].get<double>(), 0);
    EXPECT_EQ(row["samples_ts"].size(), 2u);
    EXPECT_EQ(row["n_prompt"].get<int>() + row["n_gen"].get<int>(), row["n_prompt"].get<int>() ? 16 : 4);
  }
  const auto& fp = j["rows"][0];
  const auto& q = j["rows"][8];
  EXPECT_EQ(fp["config"], "fp32");
  EXPECT_EQ(q["config"], "w4a4");
  EXPECT_EQ(j["rows"][1]["n_gen"], 4);
  EXPECT_EQ(j["rows"][2]["n_depth"], 8);
  EXPECT_EQ(j["rows"][4]["n_threads"], 2);
  EXPECT_LT(q["kv_bytes_per_position"].get<double>() * 4, fp["kv_bytes_per_position"].get<double>());
  EXPECT_LT(q["weight_bytes_per_token"].get<double>(), fp["weight_bytes_per_token"].get<double>());
  EXPECT_LT(q["model_size"].get<double>(), fp["model_size"].get<double>());
  // the markdown table has llama-bench's columns, and a quantized directory runs as stored
  r = test::run_cli("bench --reps 1 -p 8 -n 2 --model " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| model | size | params | backend | threads | test | t/s |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| pp8 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| tg2 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("llama quarot W4A4KV4 |"), std::string::npos) << r.out;
  // --lm-head-bits 8: the in-memory configuration's head packed at 8 bits is what decode reads
  // (the proxy's 8192 x 256 head: a byte per weight plus a scale per row, not 4 bytes per weight)
  r = test::run_cli("bench --reps 1 -p 0 -n 2 --configs w4a4 --lm-head-bits 8 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto h8 = nlohmann::json::parse(r.out)["rows"][0];
  const double head = 8192.0 * 256;
  EXPECT_NEAR(q["weight_bytes_per_token"].get<double>() - h8["weight_bytes_per_token"].get<double>(), 3 * head, 0.05 * head);
  r = test::run_cli("bench --reps 1 -p 8 -n 2 --lm-head-bits 8 --model " + out);
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--lm-head-bits"), std::string::npos) << r.err;
  // a depth the model's context cannot hold is refused before anything runs
  r = test::run_cli("bench --reps 1 -p 8 -n 2 -d 600 --configs fp32");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--depth"), std::string::npos) << r.err;
  r = test::run_cli("bench -d 0,x");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--depth: 'x' is not an integer"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

TEST(Cli, AnalyzeAndGenerateOnPackedModel) {
  std::string out = test::temp_dir("pk") + "/q";
  auto r = test::run_cli("quantize -q --method quarot --packed --out " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("analyze -q --nsamples 1 --seqlen 32 --json --model " + out);
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j[0]["label"], "quarot");
  EXPECT_GT(j[0]["layers"][0]["sites"]["down_in"]["kurtosis_mean"].get<double>(), 1.0);
  r = test::run_cli("generate --model " + out + " --prompt 'The' -n 4");
  EXPECT_EQ(r.code, 0) << r.err;
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

TEST(Cli, InfoReportsTheModel) {
  auto r = test::run_cli("info --json");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["parameters"], 7999744);  // tinyllama-8m/README.md: 7,999,744 parameters
  EXPECT_EQ(j["layers"], 8);
  EXPECT_EQ(j["rotations"]["R4 down_proj"], "Hadamard 16 x 44");
  r = test::run_cli("info --json --model " + test::data() + "/models/aidreams260K/aidreams260K.bin");
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["parameters"], 230976);  // SOURCES.md: 230,976 params
  EXPECT_EQ(j["rope"], "interleaved (llama2.c)");
}

}  // namespace
}  // namespace kt
