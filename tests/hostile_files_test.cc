// Hostile model files through the real CLI (issue #13 classes 4, 5 and 8 for config.json,
// safetensors, the shard index and GGUF): nesting and size bombs, inputs that are not regular
// files, and ambiguous files (duplicate keys or names) are refused with one documented line.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "test_util.h"
#include "util/file.h"

namespace kt {
namespace {

namespace fs = std::filesystem;

// A model directory: tinyllama's files, with `replace` (name -> bytes) written instead.
std::string model_dir(const std::map<std::string, std::string>& replace) {
  const std::string dir = test::temp_dir("hostile");
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
    if (!replace.count(f)) fs::create_symlink(test::tinyllama() + "/" + f, dir + "/" + f);
  for (auto& [name, bytes] : replace) write_file_atomic(dir + "/" + name, bytes);
  return dir;
}

std::string info(const std::string& model) { return "info --model '" + model + "'"; }

std::string safetensors_with_header(const std::string& header) {
  std::string out;
  const uint64_t n = header.size();
  out.append((const char*)&n, 8);
  return out + header;
}

TEST(HostileFiles, DeepJsonIsRefusedAtParseTime) {
  // 200 KB of nesting used to reach dump() in an error path and overflow the stack.
  std::string cfg = read_file(test::tinyllama() + "/config.json");
  cfg.insert(cfg.find('{') + 1, "\"num_hidden_layers\": " + std::string(100000, '[') + std::string(100000, ']') + ",");
  auto r = test::run_cli(info(model_dir({{"config.json", cfg}})));
  test::expect_documented_error(r, "config.json: JSON nested deeper than 64 levels");
  // Just under the cap, in a number's place: the message says the type, never the value.
  cfg = read_file(test::tinyllama() + "/config.json");
  const size_t at = cfg.find("\"num_hidden_layers\"");
  ASSERT_NE(at, std::string::npos);
  cfg.replace(cfg.find(':', at) + 1, cfg.find(',', at) - cfg.find(':', at) - 1,
              std::string(60, '[') + "\"\\u001b[32mkurtail: ok\"" + std::string(60, ']'));
  r = test::run_cli(info(model_dir({{"config.json", cfg}})));
  test::expect_documented_error(r, "'num_hidden_layers' must be a number, got array");
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
}

TEST(HostileFiles, OversizedFilesAreRefusedBeforeReading) {
  // A config.json far larger than any real one (sparse: nothing is allocated to make it).
  const std::string dir = model_dir({});
  fs::remove(dir + "/config.json");
  {
    OutputFile f(dir + "/config.json", OutputPolicy{});
    f.write("{}");
    f.commit();
  }
  ASSERT_EQ(truncate((dir + "/config.json").c_str(), (off_t)20 << 20), 0);
  auto r = test::run_cli(info(dir));
  test::expect_documented_error(r, "config.json: file is 20971520 bytes, more than the 16 MiB a file of this kind can need");
}

TEST(HostileFiles, NonRegularInputsAreRefusedWithoutBlocking) {
  const std::string dir = model_dir({});
  fs::remove(dir + "/config.json");
  ASSERT_EQ(mkfifo((dir + "/config.json").c_str(), 0644), 0);
  // `timeout` turns a hang into exit 124, which the check below would report.
  auto r = test::run_cli(info(dir), "timeout 60");
  test::expect_documented_error(r, "config.json: not a regular file (a FIFO, socket or device cannot be read as input)");
  fs::remove(dir + "/config.json");
  fs::create_symlink("/dev/zero", dir + "/config.json");
  r = test::run_cli(info(dir), "timeout 60");
  test::expect_documented_error(r, "config.json: not a regular file");
  // A shard, and a .gguf given as --model.
  const std::string d2 = model_dir({});
  fs::remove(d2 + "/model.safetensors");
  ASSERT_EQ(mkfifo((d2 + "/model.safetensors").c_str(), 0644), 0);
  r = test::run_cli(info(d2), "timeout 60");
  test::expect_documented_error(r, "model.safetensors: not a regular file");
  ASSERT_EQ(mkfifo((d2 + "/m.gguf").c_str(), 0644), 0);
  r = test::run_cli(info(d2 + "/m.gguf"), "timeout 60");
  test::expect_documented_error(r, "m.gguf: not a regular file");
}

TEST(HostileFiles, SafetensorsHeaderDuplicatesAndShapesAreRefused) {
  // Duplicate tensor names: nlohmann kept the last one silently; the format allows neither.
  const std::string e = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  std::string st = safetensors_with_header("{\"x\":" + e + ",\"x\":" + e + "}") + std::string(4, '\0');
  auto r = test::run_cli(info(model_dir({{"model.safetensors", st}})));
  test::expect_documented_error(r, "model.safetensors: duplicate tensor name 'x' in the header");
  // A duplicate field inside an entry.
  st = safetensors_with_header(R"({"x":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})") +
       std::string(4, '\0');
  r = test::run_cli(info(model_dir({{"model.safetensors", st}})));
  test::expect_documented_error(r, "model.safetensors: duplicate key 'dtype' in the entry of 'x'");
  // A shape that is a million entries long stops at the ninth, before any allocation grows.
  std::string dims;
  for (int i = 0; i < 1000000; i++) dims += i ? ",1" : "1";
  st = safetensors_with_header("{\"x\":{\"dtype\":\"F32\",\"shape\":[" + dims + "],\"data_offsets\":[0,4]}}") +
       std::string(4, '\0');
  r = test::run_cli(info(model_dir({{"model.safetensors", st}})));
  test::expect_documented_error(r, "model.safetensors: tensor 'x' has a bad shape");
  // A dimension beyond int64 after a zero one (numel 0) is still refused.
  st = safetensors_with_header(R"({"x":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})");
  r = test::run_cli(info(model_dir({{"model.safetensors", st}})));
  test::expect_documented_error(r, "model.safetensors: tensor 'x' shape overflows");
  // Nesting where the format has none.
  st = safetensors_with_header("{\"x\":{\"dtype\":" + std::string(5000, '[') + std::string(5000, ']') + "}}");
  r = test::run_cli(info(model_dir({{"model.safetensors", st}})));
  test::expect_documented_error(r, "model.safetensors: tensor 'x' has unknown dtype (a array)");
}

TEST(HostileFiles, TensorInTwoShardsIsRefused) {
  const std::string dir = test::temp_dir("shards");
  fs::create_symlink(test::tinyllama() + "/config.json", dir + "/config.json");
  fs::create_symlink(test::tinyllama() + "/tokenizer.model", dir + "/tokenizer.model");
  fs::create_symlink(test::tinyllama() + "/model.safetensors", dir + "/a.safetensors");
  fs::create_symlink(test::tinyllama() + "/model.safetensors", dir + "/b.safetensors");
  write_file_atomic(dir + "/model.safetensors.index.json",
                    R"({"weight_map": {"model.embed_tokens.weight": "a.safetensors", "model.norm.weight": "b.safetensors"}})");
  auto r = test::run_cli(info(dir));
  test::expect_documented_error(r, "is stored in two shards ('a.safetensors' and 'b.safetensors')");
  write_file_atomic(dir + "/model.safetensors.index.json",
                    R"({"weight_map": {"model.norm.weight": "a.safetensors", "model.norm.weight": "b.safetensors"}})");
  r = test::run_cli(info(dir));
  test::expect_documented_error(r, "model.safetensors.index.json: duplicate JSON key 'model.norm.weight'");
}

// A minimal GGUF v3: `kvs` are (key, u32 value); `tensors` are names of 1-d F32 tensors of 8.
std::string gguf(const std::vector<std::pair<std::string, uint32_t>>& kvs, const std::vector<std::string>& tensors) {
  std::string b = "GGUF";
  auto u32 = [&](uint32_t v) { b.append((const char*)&v, 4); };
  auto u64 = [&](uint64_t v) { b.append((const char*)&v, 8); };
  auto str = [&](const std::string& s) {
    u64(s.size());
    b += s;
  };
  u32(3);
  u64(tensors.size());
  u64(kvs.size());
  for (auto& [k, v] : kvs) {
    str(k);
    u32(4);  // U32
    u32(v);
  }
  uint64_t off = 0;
  for (auto& t : tensors) {
    str(t);
    u32(1);
    u64(8);
    u32(0);  // F32
    u64(off);
    off += 32;
  }
  b.append((32 - b.size() % 32) % 32, '\0');
  b.append(off, '\0');
  return b;
}

TEST(HostileFiles, GgufDuplicatesAreRefused) {
  const std::string dir = test::temp_dir("ggufdup");
  write_file_atomic(dir + "/k.gguf", gguf({{"general.alignment", 32}, {"general.alignment", 64}}, {}));
  auto r = test::run_cli(info(dir + "/k.gguf"));
  test::expect_documented_error(r, "k.gguf: duplicate GGUF key 'general.alignment'");
  write_file_atomic(dir + "/t.gguf", gguf({}, {"token_embd.weight", "token_embd.weight"}));
  r = test::run_cli(info(dir + "/t.gguf"));
  test::expect_documented_error(r, "t.gguf: duplicate tensor name 'token_embd.weight'");
}

}  // namespace
}  // namespace kt
