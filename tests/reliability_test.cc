// Reliability through the real CLI (docs/ERRORS.md): interrupted runs leave nothing behind,
// a full disk and an unwritable output fail cleanly, NaN/Inf is caught and located, and the
// same command with the same seed gives the same bytes for 1 and 2 threads.
#include <dirent.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model_factory.h"
#include "test_util.h"

namespace kt {
namespace {

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Learning with this many iterations cannot finish before the signal arrives.
const std::string kLongQuantize = "quantize -q --method kurtail --kt-iters 1000000 ";

TEST(Reliability, InterruptedQuantizeLeavesNoOutput) {
  std::string dir = test::temp_dir("sig");
  std::string out = dir + "/q";
  auto r = test::run_cli(kLongQuantize + "--out " + out, "timeout --preserve-status -s INT 5");
  test::expect_documented_error(r, "interrupted by SIGINT; stopped before writing any output", 130);
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{}) << "no OUT, no OUT.tmp.*";

  // SIGTERM while replacing an existing output (--force): the old output stays as it was.
  // (--force replaces only a kurtail output: a directory of its files with a kurtail recipe.)
  ASSERT_EQ(mkdir(out.c_str(), 0755), 0);
  const std::string old_recipe = "{\"format\": \"kurtail-recipe\", \"old\": true}";
  write_file_atomic(out + "/recipe.json", old_recipe);
  r = test::run_cli(kLongQuantize + "--force --out " + out, "timeout --preserve-status -s TERM 5");
  test::expect_documented_error(r, "interrupted by SIGTERM; stopped before writing any output", 143);
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"q"});
  EXPECT_EQ(list_dir(out), std::vector<std::string>{"recipe.json"});
  EXPECT_EQ(read_file(out + "/recipe.json", SIZE_MAX), old_recipe);
}

TEST(Reliability, DiskFullLeavesNoOutput) {
  // A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes write() fail like a full disk.
  std::string dir = test::temp_dir("full");
  auto r = test::run_cli("quantize -q --method rtn --out " + dir + "/q", "ulimit -f 4096; trap '' XFSZ;");
  test::expect_documented_error(r, "write failed: File too large");
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{});
}

TEST(Reliability, UnwritableOutputFailsBeforeWork) {
  std::string dir = test::temp_dir("nowrite");
  write_file_atomic(dir + "/file", "x");
  auto r = test::run_cli("quantize -q --method rtn --out " + dir + "/file/q");
  test::expect_documented_error(r, "cannot create output directory: Not a directory");
  r = test::run_cli("quantize -q --method rtn --out /nonexistent-parent/q");
  test::expect_documented_error(r, "cannot create output directory: No such file or directory");
}

// A random model whose tensor `name` gets `value` at element 5 (every element with fill_all).
std::string model_with_value(const std::string& name, float value, bool fill_all = false) {
  test::RandomModelOptions o;
  o.layers = 2;
  std::string dir = test::make_random_model(o);
  std::vector<std::pair<std::string, Tensor>> ts;
  {
    SafetensorsDir src(dir);
    for (auto& n : src.names()) {
      Tensor t = to_f32(src.info(n));
      if (n == name) {
        if (fill_all) std::fill(t.data.begin(), t.data.end(), value);
        else t.data[5] = value;
      }
      ts.emplace_back(n, std::move(t));
    }
  }
  std::vector<std::pair<std::string, const Tensor*>> refs;
  for (auto& [n, t] : ts) refs.emplace_back(n, &t);
  write_safetensors(dir + "/model.safetensors", refs);
  return dir;
}

TEST(Reliability, NanOrInfInWeightsIsNamed) {
  std::string dir = model_with_value("model.layers.1.mlp.down_proj.weight", std::nanf(""));
  auto r = test::run_cli("eval -q --max-windows 1 --ctx 32 --model " + dir);
  test::expect_documented_error(r, "model.safetensors: tensor 'model.layers.1.mlp.down_proj.weight' contains NaN at element 5");
  dir = model_with_value("model.layers.0.self_attn.q_proj.weight", INFINITY);
  r = test::run_cli("eval -q --max-windows 1 --ctx 32 --model " + dir);
  test::expect_documented_error(r, "tensor 'model.layers.0.self_attn.q_proj.weight' contains Inf at element 5");
}

TEST(Reliability, NonFiniteActivationsAreLocated) {
  // Finite weights (1e30 norm gains) whose activations overflow fp32 in layer 0.
  std::string dir = model_with_value("model.layers.0.post_attention_layernorm.weight", 1e30f, /*fill_all=*/true);
  auto r = test::run_cli("eval -q --max-windows 1 --ctx 32 --model " + dir);
  test::expect_documented_error(r, "model.layers.0: non-finite activation (NaN/Inf) in the layer output");
}

TEST(Reliability, UnsupportedArchitectureAndRopeScaling) {
  test::RandomModelOptions o;
  std::string dir = test::make_random_model(o);
  auto cfg = nlohmann::json::parse(read_file(dir + "/config.json", SIZE_MAX));
  auto bad = cfg;
  bad["architectures"] = {"GPT2LMHeadModel"};
  bad["model_type"] = "gpt2";
  write_file_atomic(dir + "/config.json", bad.dump());
  test::expect_documented_error(test::run_cli("info --model " + dir), "unsupported architecture 'GPT2LMHeadModel'");
  bad = cfg;
  bad["rope_scaling"] = {{"type", "mrope"}, {"factor", 4.0}};
  write_file_atomic(dir + "/config.json", bad.dump());
  test::expect_documented_error(test::run_cli("info --model " + dir), "unsupported rope_scaling type 'mrope'");
}

TEST(Reliability, TinyOrEmptyCalibrationText) {
  std::string dir = test::temp_dir("calib");
  write_file_atomic(dir + "/tiny.txt", "just a few words of text\n");
  auto r = test::run_cli("quantize -q --method quarot --weights gptq --calib " + dir + "/tiny.txt --out " + dir + "/q");
  test::expect_documented_error(r, "tiny.txt: calibration text has");
  EXPECT_NE(r.err.find("fewer than one window of"), std::string::npos) << r.err;
  EXPECT_FALSE(file_exists(dir + "/q"));
  write_file_atomic(dir + "/empty.txt", " \n\n");
  r = test::run_cli("quantize -q --method quarot --weights gptq --calib " + dir + "/empty.txt --out " + dir + "/q");
  test::expect_documented_error(r, "empty.txt: text is empty");
  EXPECT_FALSE(file_exists(dir + "/q"));
}

TEST(Reliability, SameSeedSameBytesForOneAndTwoThreads) {
  // KurTail (learned rotations: parallel loss sums) + GPTQ (calibration sampling, Hessians)
  // on two layers, packed output.
  std::string dir = test::temp_dir("det");
  const std::string args =
      "quantize -q --method kurtail --weights gptq --nsamples 8 --seqlen 128 --kt-iters 15 --kt-tokens 512 "
      "--truncate-layers 2 --packed --seed ";
  auto t1 = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1", t2 = "OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2";
  for (auto [name, seed, threads] : {std::tuple{"a", 7, t2}, {"b", 7, t2}, {"c", 7, t1}, {"d", 8, t2}}) {
    auto r = test::run_cli(args + std::to_string(seed) + " --out " + dir + "/" + name, threads);
    ASSERT_EQ(r.code, 0) << r.err;
  }
  for (const char* f : {"model.safetensors", "recipe.json", "config.json"}) {
    std::string a = read_file(dir + "/a/" + f, SIZE_MAX);
    EXPECT_TRUE(a == read_file(dir + "/b/" + f, SIZE_MAX)) << f << " differs between two identical runs";
    EXPECT_TRUE(a == read_file(dir + "/c/" + f, SIZE_MAX)) << f << " differs between 1 and 2 threads";
  }
  EXPECT_FALSE(read_file(dir + "/a/model.safetensors", SIZE_MAX) == read_file(dir + "/d/model.safetensors", SIZE_MAX))
      << "another seed must give other rotations";
  // Evaluation: the same perplexity and KL, to the last printed digit, for 1 and 2 threads.
  const std::string ev = "eval -q --json --max-windows 3 --ctx 128 --kl-ref " + test::tinyllama() + " --model " + dir + "/a";
  auto e1 = test::run_cli(ev, t1), e2 = test::run_cli(ev, t2);
  ASSERT_EQ(e1.code, 0) << e1.err;
  auto j1 = nlohmann::json::parse(e1.out), j2 = nlohmann::json::parse(e2.out);
  EXPECT_EQ(j1["perplexity"].get<double>(), j2["perplexity"].get<double>());
  EXPECT_EQ(j1["kl"].get<double>(), j2["kl"].get<double>());
}

}  // namespace
}  // namespace kt
