// safetensors: one file (header + data), or a directory with model.safetensors.index.json and
// one shard. Input = parts [index json, shard bytes]; an empty index means a single file.
// Every tensor that parses is converted to fp32, so every offset is exercised.
#include <map>

#include "fuzz_util.h"
#include "io/safetensors.h"

using namespace kt;

static const std::vector<std::string>& seeds() {
  static std::vector<std::string> s = [] {
    Tensor a({2, 3}), b({4});
    for (size_t i = 0; i < a.data.size(); i++) a.data[i] = (float)i;
    std::string p = fuzz::scratch_dir() + "/seed.safetensors";
    write_safetensors(p, {{"a", &a}, {"b", &b}}, {{"format", "pt"}});
    std::string shard = read_file(p, SIZE_MAX);
    std::string index = R"({"metadata":{"total_size":40},"weight_map":{"a":"model-00001-of-00001.safetensors","b":"model-00001-of-00001.safetensors"}})";
    return std::vector<std::string>{fuzz::make_parts({"", shard}), fuzz::make_parts({index, shard})};
  }();
  return s;
}

KT_FUZZ_SEEDS(&seeds)

static void touch_all(const TensorSource& src) {
  for (const auto& n : src.names()) {
    Tensor t = to_f32(src.info(n));
    volatile float sink = t.data.empty() ? 0.f : t.data.back();
    (void)sink;
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(data, size, 2);
  try {
    if (parts[0].empty()) {
      SafetensorsFile f(fuzz::put("model.safetensors", parts[1]));
      touch_all(f);
    } else {
      // A directory of its own so no other scratch file is mistaken for a shard.
      static const std::string dir = [] {
        std::string d = fuzz::scratch_dir() + "/sharded";
        mkdir(d.c_str(), 0700);
        return d;
      }();
      fuzz::put("sharded/model.safetensors.index.json", parts[0]);
      fuzz::put("sharded/model-00001-of-00001.safetensors", parts[1]);
      SafetensorsDir d(dir);
      touch_all(d);
    }
  } catch (const Error&) {
  }
  return 0;
}
