#include "quant/recipe.h"

#include <nlohmann/json.hpp>

#include "transform/fuse.h"
#include "util/error.h"

namespace kt {

using json = nlohmann::json;

namespace {

json spec_json(const QuantSpec& s) {
  const char* g = s.gran == Granularity::PerTensor ? "tensor" : s.gran == Granularity::PerRow ? "row" : "group";
  return {{"bits", s.bits},         {"symmetric", s.symmetric}, {"granularity", g},     {"group", s.group},
          {"clip_ratio", s.clip_ratio}, {"mse_search", s.mse_search}, {"mse_grid", s.mse_grid},
          {"mse_maxshrink", s.mse_maxshrink}, {"mse_norm", s.mse_norm}};
}

QuantSpec spec_from(const json& j, const std::string& path) {
  QuantSpec s;
  s.bits = j.at("bits").get<int>();
  if (s.bits < 2 || s.bits > 16) fail(path, "quantizer bits must be in 2..16");
  s.symmetric = j.at("symmetric").get<bool>();
  std::string g = j.at("granularity").get<std::string>();
  if (g == "tensor") s.gran = Granularity::PerTensor;
  else if (g == "row") s.gran = Granularity::PerRow;
  else if (g == "group") s.gran = Granularity::PerGroup;
  else fail(path, "unknown quantizer granularity '" + g + "'");
  s.group = j.value("group", 0);
  if (s.gran == Granularity::PerGroup && s.group <= 0) fail(path, "group quantizer needs group > 0");
  s.clip_ratio = j.value("clip_ratio", 1.0f);
  s.mse_search = j.value("mse_search", false);
  s.mse_grid = j.value("mse_grid", 100);
  s.mse_maxshrink = j.value("mse_maxshrink", 0.8f);
  s.mse_norm = j.value("mse_norm", 2.4f);
  return s;
}

}  // namespace

void Recipe::set_bits(int wbits, int abits, int kvbits, int head_dim) {
  w = QuantSpec{};
  w.bits = wbits;
  w.symmetric = true;
  w.gran = Granularity::PerRow;
  w.mse_search = true;
  a = QuantSpec{};
  a.bits = abits;
  a.symmetric = true;
  a.gran = Granularity::PerRow;
  a.clip_ratio = 0.9f;
  k = QuantSpec{};
  k.bits = kvbits;
  k.symmetric = false;
  k.gran = Granularity::PerGroup;
  k.group = head_dim;
  k.clip_ratio = 0.95f;
  v = k;
}

std::string Recipe::to_json() const {
  json j = json{{"format", "kurtail-recipe"},
            {"version", version},
            {"method", method},
            {"weight_algo", weight_algo},
            {"weights", spec_json(w)},
            {"activations", spec_json(a)},
            {"k_cache", spec_json(k)},
            {"v_cache", spec_json(v)},
            {"quant_lm_head", quant_lm_head},
            {"rotations",
             {{"r1", r1}, {"r2", r2}, {"r3", r3}, {"r4", r4}, {"r1_random_signs", r1_random_signs}, {"seed", seed},
              {"r3_kind", r3_kind}, {"r4_kind", r4_kind}, {"r3_seed", r3_seed}, {"r4_seed", r4_seed}}},
            {"gptq", {{"percdamp", percdamp}, {"block", gptq_block}, {"act_order", act_order}}},
            {"calibration", {{"text", calib}, {"nsamples", nsamples}, {"seqlen", seqlen}}}};
  if (method == "kurtail")
    j["kurtail"] = {{"target", kurtail.target}, {"squared", kurtail.squared}, {"budget", kurtail.budget},
                    {"iters", kurtail.iters}, {"lr", kurtail.lr}, {"momentum", kurtail.momentum},
                    {"learn_r1", kurtail.learn_r1}, {"learn_r2", kurtail.learn_r2}};
  return j.dump(2);
}

Recipe Recipe::from_json(const std::string& text, const std::string& path) {
  Recipe r;
  try {
    json j = json::parse(text);
    if (j.value("format", "") != "kurtail-recipe") fail(path, "not a kurtail recipe (format field missing)");
    r.version = j.at("version").get<int>();
    if (r.version != 1) fail(path, "unsupported recipe version " + std::to_string(r.version));
    r.method = j.at("method").get<std::string>();
    r.weight_algo = j.value("weight_algo", "rtn");
    r.w = spec_from(j.at("weights"), path);
    r.a = spec_from(j.at("activations"), path);
    r.k = spec_from(j.at("k_cache"), path);
    r.v = spec_from(j.at("v_cache"), path);
    r.quant_lm_head = j.value("quant_lm_head", false);
    const json& rot = j.at("rotations");
    r.r1 = rot.at("r1").get<bool>();
    r.r2 = rot.at("r2").get<bool>();
    r.r3 = rot.at("r3").get<bool>();
    r.r4 = rot.at("r4").get<bool>();
    r.r1_random_signs = rot.value("r1_random_signs", true);
    r.seed = rot.value("seed", (uint64_t)0);
    r.r3_kind = rot.value("r3_kind", "hadamard");
    r.r4_kind = rot.value("r4_kind", "hadamard");
    r.r3_seed = rot.value("r3_seed", (uint64_t)0);
    r.r4_seed = rot.value("r4_seed", (uint64_t)0);
    if (j.contains("gptq")) {
      r.percdamp = j["gptq"].value("percdamp", 0.01);
      r.gptq_block = j["gptq"].value("block", 128);
      r.act_order = j["gptq"].value("act_order", false);
    }
    if (j.contains("kurtail")) {
      const json& k = j["kurtail"];
      r.kurtail.target = k.value("target", 1.8);
      r.kurtail.squared = k.value("squared", true);
      r.kurtail.budget = k.value("budget", 2048);
      r.kurtail.iters = k.value("iters", 200);
      r.kurtail.lr = k.value("lr", 0.1);
      r.kurtail.momentum = k.value("momentum", 0.9);
      r.kurtail.learn_r1 = k.value("learn_r1", true);
      r.kurtail.learn_r2 = k.value("learn_r2", true);
    }
    if (j.contains("calibration")) {
      r.calib = j["calibration"].value("text", "");
      r.nsamples = j["calibration"].value("nsamples", 0);
      r.seqlen = j["calibration"].value("seqlen", 0);
    }
  } catch (const json::exception& e) {
    fail(path, std::string("malformed recipe: ") + e.what());
  }
  return r;
}

RecipeHooks::RecipeHooks(const Recipe& r, const ModelSpec& s, bool qa) : quantize_activations(qa), r_(r), s_(s) {
  auto make = [](const std::string& kind, int n, uint64_t seed) {
    return kind == "random_orthogonal" ? Rotation::random_orthogonal(n, seed) : Rotation::hadamard(n, false, seed);
  };
  if (r.r3) r3_ = make(r.r3_kind, s.head_dim, r.r3_seed);
  if (r.r4) r4_ = make(r.r4_kind, s.ffn, r.r4_seed);
}

void RecipeHooks::on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) {
  if (r_.r3 && (site == Site::Q || site == Site::K)) rotate_heads(x, rows, (int)(cols / s_.head_dim), r3_);
  if (r_.r4 && site == Site::DownIn) r4_.apply(x, rows);
  if (!quantize_activations) return;
  switch (site) {
    case Site::AttnIn: case Site::OIn: case Site::MlpIn: case Site::DownIn:
      fake_quant_ref(x, rows, cols, r_.a);
      break;
    case Site::K: fake_quant_ref(x, rows, cols, r_.k); break;
    case Site::V: fake_quant_ref(x, rows, cols, r_.v); break;
    case Site::LmHeadIn:
      if (r_.quant_lm_head) fake_quant_ref(x, rows, cols, r_.a);
      break;
    case Site::Q: break;  // queries stay in full precision
  }
}

}  // namespace kt
