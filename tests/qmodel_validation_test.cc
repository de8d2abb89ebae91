// A quantized model is validated when it loads (issue #13 class 7, quant/validate_model.h):
// small models are quantized by the real binary with every method that writes tensors, in fake
// (--fake) and --packed form; each test corrupts one thing in a copy (recipe.json edited,
// model.safetensors rewritten with the io/safetensors writer) and checks that every command
// that loads a model refuses it with the one documented line. The clean models load on every
// path, so the checks are not simply refusing everything.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "io/hf_config.h"
#include "io/safetensors.h"
#include "quant/pipeline.h"
#include "quant/session.h"
#include "quant/validate_model.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A few KB of the calibration text: evaluating 64 tokens needs no 1 MB tokenization.
const std::string& small_text() {
  static const std::string p = [] {
    std::string d = test::temp_dir("qvt") + "/small.txt";
    write_file_atomic(d, read_file(test::data() + "/text/calib.txt", SIZE_MAX).substr(0, 6000));
    return d;
  }();
  return p;
}

// One quantized tinyllama (2 layers) per method and form, written once by `kurtail quantize`.
const std::string& qmodel(const std::string& method, bool packed = false) {
  static std::map<std::string, std::string> made;
  const std::string key = method + (packed ? "-packed" : "");
  auto it = made.find(key);
  if (it != made.end()) return it->second;
  const std::string dir = test::temp_dir("qv") + "/" + key;
  std::string args = "quantize -q --method " + method + " --truncate-layers 2 --nsamples 4 --seqlen 64 --calib " + small_text() +
                     " --out " + dir;
  args += packed ? " --packed" : " --fake";
  if (method == "kurtail") args += " --kt-iters 5 --kt-tokens 256";
  auto r = test::run_cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  return made[key] = dir;
}

std::string copy_of(const std::string& src) {
  const std::string dst = test::temp_dir("qvc") + "/m";
  fs::copy(src, dst, fs::copy_options::recursive);
  return dst;
}

// model.safetensors as editable tensors (U8 and F16 kept as such when written back).
struct Stored {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::set<std::string> u8, f16;
  std::map<std::string, std::string> meta;

  Tensor& at(const std::string& name) {
    for (auto& [n, t] : tensors)
      if (n == name) return t;
    ADD_FAILURE() << "no tensor " << name;
    static Tensor none;
    return none;
  }
  void erase(const std::string& name) {
    std::erase_if(tensors, [&](auto& p) { return p.first == name; });
  }
  void add(const std::string& name, Tensor t) { tensors.emplace_back(name, std::move(t)); }
};

Stored read_stored(const std::string& dir) {
  Stored s;
  SafetensorsFile f(dir + "/model.safetensors");
  s.meta = f.metadata();
  for (const std::string& n : f.names()) {
    const TensorInfo& ti = f.info(n);
    Tensor t;
    if (ti.dtype == DType::U8) {
      t.shape = ti.shape;
      t.data.assign(ti.data, ti.data + ti.nbytes);
      s.u8.insert(n);
    } else {
      t = to_f32(ti);
      if (ti.dtype == DType::F16) s.f16.insert(n);
    }
    s.tensors.emplace_back(n, std::move(t));
  }
  return s;
}

void write_stored(const std::string& dir, const Stored& s) {
  std::vector<std::pair<std::string, const Tensor*>> ts;
  for (auto& [n, t] : s.tensors) ts.emplace_back(n, &t);
  write_safetensors(dir + "/model.safetensors", ts, s.meta, s.u8, s.f16);
}

// A copy of `src` with its tensors edited.
std::string with_tensors(const std::string& src, const std::function<void(Stored&)>& edit) {
  std::string d = copy_of(src);
  Stored s = read_stored(d);
  edit(s);
  write_stored(d, s);
  return d;
}

// A copy of `src` with its recipe.json edited.
std::string with_recipe(const std::string& src, const std::function<void(json&)>& edit) {
  std::string d = copy_of(src);
  json j = json::parse(read_file(d + "/recipe.json", SIZE_MAX));
  edit(j);
  write_file_atomic(d + "/recipe.json", j.dump(2));
  return d;
}

// Every command that opens a model directory; D is replaced by the model.
const std::vector<std::string>& loaders() {
  static const std::vector<std::string> l = {
      "eval -q --max-windows 1 --ctx 64 --text " + small_text() + " --model D",  // int kernels where the recipe allows
      "eval -q --kernels fake --max-windows 1 --ctx 64 --text " + small_text() + " --model D",  // fake quantization
      "run -n 1 --prompt hi --model D",  // real kernels, quantized KV cache
      "generate -n 1 --prompt hi --model D",
      "bench --reps 1 --pp 4 --tg 1 --configs w4a4 --model D",  // re-quantizes what it loads
      "analyze -q --nsamples 1 --seqlen 64 --calib " + small_text() + " --model D",
      "info --model D",
      "export-gguf -q --out D.gguf --model D",
  };
  return l;
}

std::string cmd_for(const std::string& tmpl, const std::string& dir) {
  std::string c;
  size_t i = 0;
  while (i < tmpl.size()) {
    size_t e = tmpl.find(' ', i);
    if (e == std::string::npos) e = tmpl.size();
    const std::string tok = tmpl.substr(i, e - i);
    c += (i ? " " : "") + (tok == "D" ? "'" + dir + "'" : tok == "D.gguf" ? "'" + dir + "'.gguf" : tok);
    i = e + 1;
  }
  return c;
}

// Every loader refuses `dir` with the documented line containing `must_contain`.
void expect_refused(const std::string& dir, const std::string& must_contain) {
  for (const std::string& l : loaders()) {
    const std::string cmd = cmd_for(l, dir);
    SCOPED_TRACE(cmd);
    test::expect_documented_error(test::run_cli(cmd), must_contain);
  }
  EXPECT_FALSE(file_exists(dir + ".gguf"));
}

TEST(QmodelValidation, LoaderCommandsNameTheModel) {
  EXPECT_EQ(cmd_for("info --model D", "/x/m"), "info --model '/x/m'");
  EXPECT_EQ(cmd_for("export-gguf -q --out D.gguf --model D", "/x/m"), "export-gguf -q --out '/x/m'.gguf --model '/x/m'");
}

TEST(QmodelValidation, CleanModelsLoadOnEveryPath) {
  for (const char* m : {"quarot", "kurtail", "smoothquant", "smoothrot", "duquant", "crossquant"})
    for (bool packed : {false, true}) {
      // Rewritten through the test's own reader/writer: the corruption tests start from this.
      const std::string dir = with_tensors(qmodel(m, packed), [](Stored&) {});
      for (const std::string& l : loaders()) {
        const std::string cmd = cmd_for(l, dir);
        SCOPED_TRACE(cmd);
        auto r = test::run_cli(cmd);
        if (l.rfind("export-gguf", 0) == 0 && std::string(m) != "smoothquant") {
          // every other method keeps online transforms, which GGUF cannot express
          test::expect_documented_error(r, "needs online transforms GGUF cannot express");
        } else {  // a packed model exports its grid values (Gguf.PackedModelExportsAsTheFakeQuantModel)
          EXPECT_EQ(r.code, 0) << r.err;
        }
      }
      std::optional<Recipe> rec;
      auto m2 = open_model(dir, -1, "", &rec);
      ASSERT_TRUE(rec.has_value());
      EXPECT_EQ(rec->method, m);
    }
}

// --- recipe.json ---------------------------------------------------------------------------

TEST(QmodelValidation, RecipeValuesOutOfRange) {
  const std::string q = qmodel("quarot");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["bits"] = 9; }),
                 "recipe.json: 'weights.bits' is 9; supported: 2..8, or 16 (not quantized)");
  expect_refused(with_recipe(q, [](json& j) { j["activations"]["bits"] = 1; }),
                 "recipe.json: 'activations.bits' is 1; supported: 2..8, or 16 (not quantized)");
  expect_refused(with_recipe(q, [](json& j) { j["activations"]["clip_ratio"] = 0; }),
                 "recipe.json: 'activations.clip_ratio' is 0; must be in (0, 1]");
  expect_refused(with_recipe(q, [](json& j) { j["k_cache"]["clip_ratio"] = -0.5; }),
                 "recipe.json: 'k_cache.clip_ratio' is -0.5; must be in (0, 1]");
  expect_refused(with_recipe(q, [](json& j) { j["v_cache"]["clip_ratio"] = 1.5; }),
                 "recipe.json: 'v_cache.clip_ratio' is 1.5; must be in (0, 1]");
  expect_refused(with_recipe(q, [](json& j) { j["method"] = "nosuch"; }), "recipe.json: unknown method 'nosuch'");
  expect_refused(with_recipe(q, [](json& j) { j["weight_algo"] = "awq"; }),
                 "recipe.json: 'weight_algo' is 'awq'; must be rtn or gptq");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["granularity"] = "channel"; }),
                 "recipe.json: 'weights.granularity' is 'channel'; must be tensor, row or group");
  expect_refused(with_recipe(q, [](json& j) { j["k_cache"]["group"] = 0; }),
                 "recipe.json: 'k_cache.group' is 0; granularity group needs a group size > 0");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["mse_grid"] = 0; }),
                 "recipe.json: 'weights.mse_grid' is 0; must be in [1, 10000]");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["scale_dtype"] = "bf16"; }),
                 "recipe.json: 'weights.scale_dtype' is 'bf16'; must be f32 or f16");
  expect_refused(with_recipe(q, [](json& j) { j["rotations"]["r3_kind"] = "dense"; }),
                 "recipe.json: 'rotations.r3_kind' is 'dense'; must be hadamard or random_orthogonal");
  expect_refused(with_recipe(q, [](json& j) { j["gptq"]["percdamp"] = -1; }),
                 "recipe.json: 'gptq.percdamp' is -1; must be in [0, 1]");
  expect_refused(with_recipe(q, [](json& j) { j["smoothing"]["alpha"] = 2; }),
                 "recipe.json: 'smoothing.alpha' is 2; must be in [0, 1]");
  expect_refused(with_recipe(qmodel("duquant"), [](json& j) { j["duquant"]["alpha"] = -0.1; }),
                 "recipe.json: 'duquant.alpha' is -0.1; must be in [0, 1]");
  expect_refused(with_recipe(qmodel("duquant"), [](json& j) { j["duquant"]["block"] = 0; }),
                 "recipe.json: 'duquant.block' is 0; must be in [1, 65536]");
  expect_refused(with_recipe(qmodel("crossquant"), [](json& j) { j["crossquant"]["alpha"] = 7; }),
                 "recipe.json: 'crossquant.alpha' is 7; must be in [0, 1]");
  expect_refused(with_recipe(qmodel("kurtail"), [](json& j) { j["kurtail"]["momentum"] = 1; }),
                 "recipe.json: 'kurtail.momentum' is 1; must be in [0, 1)");
  expect_refused(with_recipe(qmodel("kurtail"), [](json& j) { j["kurtail"]["lr"] = 0; }),
                 "recipe.json: 'kurtail.lr' is 0; must be in (0, 1e+06]");
  expect_refused(with_recipe(qmodel("kurtail"), [](json& j) { j["kurtail"]["budget"] = 0; }),
                 "recipe.json: 'kurtail.budget' is 0; must be >= 1");
  expect_refused(with_recipe(q, [](json& j) { j["calibration"]["nsamples"] = -3; }),
                 "recipe.json: 'calibration.nsamples' is -3; must be >= 0");
  // a huge number where an int belongs is refused by the range-checked reader, not cast
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["bits"] = 1e300; }), "'weights.bits' must be an integer in range");
}

TEST(QmodelValidation, RecipeTypesAndKeys) {
  const std::string q = qmodel("quarot");
  expect_refused(with_recipe(q, [](json& j) { j["rotations"]["r1"] = "yes"; }),
                 "recipe.json: 'rotations.r1' must be a boolean, got string");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["symmetric"] = nullptr; }),
                 "recipe.json: 'weights.symmetric' must be a boolean, got null");
  expect_refused(with_recipe(q, [](json& j) { j["method"] = 3; }), "recipe.json: 'method' must be a string, got number");
  expect_refused(with_recipe(q, [](json& j) { j["weights"] = json::array(); }),
                 "recipe.json: 'weights' must be an object, got array");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["clip"] = 0.5; }), "recipe.json: unknown key 'weights.clip'");
  expect_refused(with_recipe(q, [](json& j) { j["extra"] = 1; }), "recipe.json: unknown key 'extra'");
  expect_refused(with_recipe(q, [](json& j) { j["rotations"].erase("r2"); }), "recipe.json: missing key 'rotations.r2'");
  expect_refused(with_recipe(q, [](json& j) { j["tensors"] = "x"; }),
                 "recipe.json: 'tensors' must be an array of names, got string");
  // kurtail settings belong to method kurtail only
  expect_refused(with_recipe(q, [](json& j) { j["kurtail"] = {{"iters", 3}}; }),
                 "recipe.json: 'kurtail' settings in a recipe whose method is 'quarot'");
}

TEST(QmodelValidation, RecipeDisagreesWithTheModel) {
  const std::string q = qmodel("quarot");
  // the method decides the rotations; --no-rN can only switch them off
  expect_refused(with_recipe(qmodel("smoothquant"), [](json& j) { j["rotations"]["r1"] = true; }),
                 "recipe.json: 'rotations.r1' is true but method 'smoothquant' has no r1");
  expect_refused(with_recipe(qmodel("smoothrot"), [](json& j) { j["smoothing"]["online_hadamard_inputs"] = true; }),
                 "recipe.json: 'smoothing.online_hadamard_inputs' is true but method 'smoothrot' has no online input Hadamards");
  expect_refused(with_recipe(qmodel("crossquant"), [](json& j) { j["crossquant"]["enabled"] = false; }),
                 "recipe.json: 'crossquant.enabled' is false but method is 'crossquant'");
  // R4 is fused into down_proj: rebuilding another one would be a different model
  expect_refused(with_recipe(q, [](json& j) { j["rotations"]["r4_seed"] = 5; }),
                 "recipe.json: 'rotations.r4_seed' is 5; the writer derives 4 (rotations.seed + 4)");
  expect_refused(with_recipe(q, [](json& j) { j["rotations"]["r4_kind"] = "random_orthogonal"; }),
                 "recipe.json: 'rotations.r4_kind' is 'random_orthogonal' but a rotation of size 704 is built as 'hadamard'");
  expect_refused(with_recipe(q, [](json& j) {
                   j["weights"]["granularity"] = "group";
                   j["weights"]["group"] = 48;
                 }),
                 "recipe.json: 'weights.group' is 48, which does not divide hidden_size 256 (config.json)");
  expect_refused(with_recipe(q, [](json& j) { j["k_cache"]["group"] = 96; }),
                 "recipe.json: 'k_cache.group' is 96, which does not divide the K/V width 128 (config.json)");
  expect_refused(with_recipe(q, [](json& j) { j["calibration"]["seqlen"] = 4096; }),
                 "recipe.json: 'calibration.seqlen' is 4096, beyond max_position_embeddings 512 (config.json)");
  // the recorded scales disagree with the recipe's weight quantizer
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["bits"] = 8; }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.qbits' is 4 but recipe.json weights.bits is 8");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["bits"] = 16; }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.qscale' is not used by the recipe (weights fp)");
  expect_refused(with_recipe(q, [](json& j) { j["weights"]["scale_dtype"] = "f16"; }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.qscale' is F32 but recipe.json weights.scale_dtype is f16");
  expect_refused(with_recipe(q, [](json& j) {
                   j["weights"]["granularity"] = "group";
                   j["weights"]["group"] = 32;
                 }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.qscale' has shape [256, 1] but recipe.json weights");
  // the tensors list names exactly the online tensors
  expect_refused(with_recipe(qmodel("duquant"), [](json& j) { j["tensors"].erase(0); }),
                 "recipe.json: 'tensors' does not list 'site.0.attn_in.perm' (model.safetensors has it)");
  expect_refused(with_recipe(qmodel("duquant"), [](json& j) { j["tensors"].push_back("site.0.q.smooth"); }),
                 "recipe.json: 'tensors' lists 'site.0.q.smooth', which method 'duquant' does not have");
  // DuQuant's block size decides the shape of every block rotation
  expect_refused(with_recipe(qmodel("duquant"), [](json& j) { j["duquant"]["block"] = 64; }),
                 "model.safetensors: tensor 'kurtail.site.0.attn_in.rot_a' has shape [128, 128]; the recipe implies [64, 64]");
  expect_refused(with_recipe(qmodel("duquant"), [](json& j) { j["duquant"]["permute"] = false; }),
                 "model.safetensors: tensor 'kurtail.site.0.attn_in.perm' is not used by the recipe (method 'duquant')");
  expect_refused(with_recipe(qmodel("smoothquant"), [](json& j) { j["method"] = "rtn"; }),
                 "model.safetensors: __metadata__ kurtail_method is 'smoothquant' but recipe.json says 'rtn'");
}

// --- per-linear scales, bits and packed bytes ---------------------------------------------

TEST(QmodelValidation, WeightScalesAndBits) {
  for (bool packed : {false, true}) {
    SCOPED_TRACE(packed ? "packed" : "fake");
    const std::string q = qmodel("quarot", packed);
    const std::string p = "model.layers.1.mlp.down_proj";
    expect_refused(with_tensors(q, [&](Stored& s) { s.at(p + ".qscale").data[3] = NAN; }),
                   "model.safetensors: tensor 'model.layers.1.mlp.down_proj.qscale' contains NaN at element 3");
    expect_refused(with_tensors(q, [&](Stored& s) { s.at(p + ".qscale").data[3] = INFINITY; }),
                   "model.safetensors: tensor 'model.layers.1.mlp.down_proj.qscale' contains Inf at element 3");
    expect_refused(with_tensors(q, [&](Stored& s) { s.at(p + ".qscale").data[3] = 0; }),
                   "model.safetensors: tensor 'model.layers.1.mlp.down_proj.qscale' has scale 0 at element 3; scales must be finite and > 0");
    expect_refused(with_tensors(q, [&](Stored& s) { s.at(p + ".qscale").data[0] = -0.25f; }),
                   "model.safetensors: tensor 'model.layers.1.mlp.down_proj.qscale' has scale -0.25 at element 0; scales must be finite and > 0");
    expect_refused(with_tensors(q, [&](Stored& s) { s.at(p + ".qbits").data[0] = 9; }),
                   "model.safetensors: tensor 'model.layers.1.mlp.down_proj.qbits' is 9; weight bits are 4, 6 or 8");
    expect_refused(with_tensors(q, [&](Stored& s) { s.erase(p + ".qbits"); }),
                   "model.safetensors: missing tensor 'model.layers.1.mlp.down_proj.qbits' ('model.layers.1.mlp.down_proj.qscale' needs it)");
    expect_refused(with_tensors(q, [&](Stored& s) {
                     Tensor& t = s.at(p + ".qscale");
                     t.shape = {t.shape[0] / 2, 2};
                   }),
                   "model.safetensors: tensor 'model.layers.1.mlp.down_proj.qscale' has shape [128, 2]; expected [256, G] with G dividing 704");
    expect_refused(with_tensors(q, [&](Stored& s) { s.erase(p + ".qscale"); }),
                   "model.safetensors: tensor 'model.layers.1.mlp.down_proj.qbits' without 'model.layers.1.mlp.down_proj.qscale'");
  }
  // fake-quant weights must lie on their scales' integer grid
  expect_refused(with_tensors(qmodel("quarot"), [](Stored& s) {
                   float& w = s.at("model.layers.0.mlp.up_proj.weight").data[5];
                   const float sc = s.at("model.layers.0.mlp.up_proj.qscale").data[0];
                   w = (std::nearbyint(w / sc) + 0.5f) * sc;  // half-way between two levels
                 }),
                 "model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight' is not on the int4 grid of its scales (element 5");
  // a weight quantizer that records scales needs them on every linear
  expect_refused(with_tensors(qmodel("smoothquant"), [](Stored& s) {
                   s.erase("model.layers.1.self_attn.v_proj.qscale");
                   s.erase("model.layers.1.self_attn.v_proj.qbits");
                 }),
                 "model.safetensors: missing tensor 'model.layers.1.self_attn.v_proj.qscale' (weights int4 sym per-row mse-clip record scales)");
}

TEST(QmodelValidation, PackedWeights) {
  const std::string q = qmodel("quarot", true);
  const std::string p = "model.layers.0.self_attn.k_proj";
  expect_refused(with_tensors(q, [&](Stored& s) {
                   Tensor& t = s.at(p + ".qweight");
                   t.data.pop_back();
                   t.shape = {(int64_t)t.data.size()};
                 }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.k_proj.qweight' has 16383 bytes; 128x256 int4 packs into 16384");
  expect_refused(with_tensors(q, [&](Stored& s) { s.u8.erase(p + ".qweight"); }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.k_proj.qweight' must be U8 and 1-D, is F32 [16384]");
  expect_refused(with_tensors(q, [&](Stored& s) { s.erase(p + ".qweight"); }),
                 "model.safetensors: missing tensor 'model.layers.0.self_attn.k_proj.qweight' (kurtail_format packed-1 packs this linear)");
  expect_refused(with_tensors(q, [&](Stored& s) {
                   Tensor w({128, 256});
                   s.add(p + ".weight", std::move(w));
                 }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.k_proj.qweight' and 'model.layers.0.self_attn.k_proj.weight' both present");
  // a fakequant-1 file holds no packed weights
  expect_refused(with_tensors(q, [&](Stored& s) { s.meta["kurtail_format"] = "fakequant-1"; }),
                 "model.safetensors: tensor 'model.layers.0.self_attn.q_proj.qweight' in a kurtail_format fakequant-1 model");
  expect_refused(with_tensors(q, [&](Stored& s) { s.meta["kurtail_format"] = "packed-9"; }),
                 "model.safetensors: __metadata__ kurtail_format is 'packed-9'; must be fakequant-1 or packed-1");
}

// --- kurtail.* online tensors --------------------------------------------------------------

TEST(QmodelValidation, DuQuantTensors) {
  for (bool packed : {false, true}) {
    SCOPED_TRACE(packed ? "packed" : "fake");
    const std::string q = qmodel("duquant", packed);
    expect_refused(with_tensors(q, [](Stored& s) {
                     Tensor& r = s.at("kurtail.site.0.o_in.rot_a");
                     for (int j = 0; j < 128; j++) r.data[j] *= 1.5f;  // one row no longer unit length
                   }),
                   "model.safetensors: tensor 'kurtail.site.0.o_in.rot_a' is not orthogonal (max");
    expect_refused(with_tensors(q, [](Stored& s) {
                     s.at("kurtail.site.1.down_in.rot_b") = Tensor({32, 32});
                   }),
                   "model.safetensors: tensor 'kurtail.site.1.down_in.rot_b' has shape [32, 32]; the recipe implies [64, 64]");
    expect_refused(with_tensors(q, [](Stored& s) {
                     Tensor& p = s.at("kurtail.site.1.down_in.perm");
                     p.data[7] = p.data[8];
                   }),
                   "model.safetensors: tensor 'kurtail.site.1.down_in.perm' is not a permutation of 0..703 (element ");
    expect_refused(with_tensors(q, [](Stored& s) { s.at("kurtail.site.0.mlp_in.perm").data[2] = 1.5f; }),
                   "model.safetensors: tensor 'kurtail.site.0.mlp_in.perm' is not a permutation of 0..255 (element 2 is 1.5)");
    expect_refused(with_tensors(q, [](Stored& s) { s.at("kurtail.site.0.mlp_in.perm").data[2] = 1e30f; }),
                   "model.safetensors: tensor 'kurtail.site.0.mlp_in.perm' is not a permutation of 0..255 (element 2 is 1e+30)");
    expect_refused(with_tensors(q, [](Stored& s) { s.at("kurtail.site.0.attn_in.smooth").data[4] = -1; }),
                   "model.safetensors: tensor 'kurtail.site.0.attn_in.smooth' has scale -1 at element 4; smoothing scales must be > 0");
    expect_refused(with_tensors(q, [](Stored& s) { s.at("kurtail.site.0.attn_in.smooth").data[4] = 0; }),
                   "model.safetensors: tensor 'kurtail.site.0.attn_in.smooth' has scale 0 at element 4; smoothing scales must be > 0");
    expect_refused(with_tensors(q, [](Stored& s) { s.at("kurtail.site.1.o_in.smooth").data[9] = NAN; }),
                   "model.safetensors: tensor 'kurtail.site.1.o_in.smooth' contains NaN at element 9");
    expect_refused(with_tensors(q, [](Stored& s) { s.erase("kurtail.site.1.mlp_in.rot_b"); }),
                   "model.safetensors: missing tensor 'kurtail.site.1.mlp_in.rot_b' (method 'duquant' needs it)");
    expect_refused(with_tensors(q, [](Stored& s) { s.f16.insert("kurtail.site.1.mlp_in.smooth"); }),
                   "model.safetensors: tensor 'kurtail.site.1.mlp_in.smooth' has dtype F16; must be F32");
  }
}

TEST(QmodelValidation, CrossQuantTensors) {
  for (bool packed : {false, true}) {
    SCOPED_TRACE(packed ? "packed" : "fake");
    const std::string q = qmodel("crossquant", packed);
    // too short: read past its end before (heap overflow under ASan)
    expect_refused(with_tensors(q, [](Stored& s) {
                     Tensor& c = s.at("kurtail.cq.1.down_in.colmax");
                     c.data.resize(100);
                     c.shape = {100};
                   }),
                   "model.safetensors: tensor 'kurtail.cq.1.down_in.colmax' has shape [100]; the recipe implies [704]");
    expect_refused(with_tensors(q, [](Stored& s) { s.at("kurtail.cq.0.attn_in.colmax").data[1] = -2; }),
                   "model.safetensors: tensor 'kurtail.cq.0.attn_in.colmax' has column maximum -2 at element 1; column maxima are >= 0");
    expect_refused(with_tensors(q, [](Stored& s) { s.at("kurtail.cq.0.attn_in.colmax").data[1] = INFINITY; }),
                   "model.safetensors: tensor 'kurtail.cq.0.attn_in.colmax' contains Inf at element 1");
    expect_refused(with_tensors(q, [](Stored& s) { s.erase("kurtail.cq.1.o_in.colmax"); }),
                   "model.safetensors: missing tensor 'kurtail.cq.1.o_in.colmax' (method 'crossquant' needs it)");
  }
}

TEST(QmodelValidation, OnlineTensorsOnlyWhereTheRecipeUsesThem) {
  // a rotation tensor a rotation method never stores (R1 is fused into the weights)
  expect_refused(with_tensors(qmodel("quarot"), [](Stored& s) { s.add("kurtail.r1", Tensor({256, 256})); }),
                 "model.safetensors: tensor 'kurtail.r1' is not used by the recipe (method 'quarot')");
  // smoothrot folds its smoothing into the weights: no online smoothing tensor
  expect_refused(with_tensors(qmodel("smoothrot"), [](Stored& s) { s.add("kurtail.site.0.down_in.smooth", Tensor({704})); }),
                 "model.safetensors: tensor 'kurtail.site.0.down_in.smooth' is not used by the recipe (method 'smoothrot')");
  expect_refused(with_tensors(qmodel("kurtail"), [](Stored& s) { s.add("kurtail.cq.0.o_in.colmax", Tensor({256})); }),
                 "model.safetensors: tensor 'kurtail.cq.0.o_in.colmax' is not used by the recipe (method 'kurtail')");
  // layer beyond the model, or a name only stoi() would read as a layer
  expect_refused(with_tensors(qmodel("duquant"), [](Stored& s) { s.add("kurtail.site.2.o_in.smooth", Tensor({256})); }),
                 "model.safetensors: tensor 'kurtail.site.2.o_in.smooth' is not used by the recipe (method 'duquant')");
  expect_refused(with_tensors(qmodel("duquant"), [](Stored& s) { s.add("kurtail.site.0x.o_in.smooth", Tensor({256})); }),
                 "model.safetensors: tensor 'kurtail.site.0x.o_in.smooth' is not used by the recipe (method 'duquant')");
  // anything else a quantized model does not have
  expect_refused(with_tensors(qmodel("quarot"), [](Stored& s) { s.add("model.layers.5.mlp.up_proj.qscale", Tensor({704, 1})); }),
                 "model.safetensors: tensor 'model.layers.5.mlp.up_proj.qscale' is not part of a kurtail quantized model of this config.json");
  expect_refused(with_tensors(qmodel("quarot"), [](Stored& s) { s.add("model.layers.0.mlp.up_proj.bias", Tensor({704})); }),
                 "model.safetensors: tensor 'model.layers.0.mlp.up_proj.bias' is not part of a kurtail quantized model");
  // untrusted names are escaped: no terminal escape sequence reaches stderr
  const std::string d = with_tensors(qmodel("quarot"), [](Stored& s) { s.add("kurtail.\x1b[32mok", Tensor({1})); });
  auto r = test::run_cli("eval -q --model '" + d + "'");
  test::expect_documented_error(r, "is not used by the recipe (method 'quarot')");
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'kurtail.\\x1b[32mok'"), std::string::npos) << r.err;
}

// The library entry points refuse the same way (the fuzz target fuzz_qmodel goes through them).
TEST(QmodelValidation, LibraryLoadPathsRefuse) {
  const std::string d = with_tensors(qmodel("crossquant"), [](Stored& s) {
    Tensor& c = s.at("kurtail.cq.0.mlp_in.colmax");
    c.data.resize(3);
    c.shape = {3};
  });
  try {
    open_model(d);
    ADD_FAILURE() << "open_model accepted a short column-max vector";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'kurtail.cq.0.mlp_in.colmax' has shape [3]; the recipe implies [256]"),
              std::string::npos) << e.what();
  }
  ModelSpec s = read_hf_config(d + "/config.json");
  EXPECT_THROW(open_session(d), Error);
  EXPECT_THROW(load_validated_recipe(d, s), Error);
}

}  // namespace
}  // namespace kt
