#include "quant/recipe.h"

#include "io/json_checked.h"

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
          {"mse_maxshrink", s.mse_maxshrink}, {"mse_norm", s.mse_norm},
          {"scale_dtype", s.scale_f16 ? "f16" : "f32"}};
}

QuantSpec spec_from(const json& j, const std::string& path) {
  QuantSpec s;
  s.bits = json_number<int>(j.at("bits"), path, "bits");
  if (s.bits < 2 || s.bits > 16) fail(path, "quantizer bits must be in 2..16");
  s.symmetric = j.at("symmetric").get<bool>();
  std::string g = j.at("granularity").get<std::string>();
  if (g == "tensor") s.gran = Granularity::PerTensor;
  else if (g == "row") s.gran = Granularity::PerRow;
  else if (g == "group") s.gran = Granularity::PerGroup;
  else fail(path, "unknown quantizer granularity '" + g + "'");
  s.group = json_number_or<int>(j, "group", 0, path);
  if (s.gran == Granularity::PerGroup && s.group <= 0) fail(path, "group quantizer needs group > 0");
  s.clip_ratio = json_number_or<float>(j, "clip_ratio", 1.0f, path);
  s.mse_search = j.value("mse_search", false);
  s.mse_grid = json_number_or<int>(j, "mse_grid", 100, path);
  s.mse_maxshrink = json_number_or<float>(j, "mse_maxshrink", 0.8f, path);
  s.mse_norm = json_number_or<float>(j, "mse_norm", 2.4f, path);
  const std::string sd = j.value("scale_dtype", "f32");
  if (sd != "f32" && sd != "f16") fail(path, "unknown scale_dtype '" + sd + "' (f32 or f16)");
  s.scale_f16 = sd == "f16";
  return s;
}

}  // namespace

const char* Recipe::method_list() {
  return "rtn, quarot, kurtail, smoothquant, smoothrot, smoothrot-all, duquant, crossquant";
}

void Recipe::set_method(const std::string& m) {
  r1 = r2 = r3 = r4 = online_had_inputs = false;
  if (m == "quarot" || m == "kurtail" || m == "smoothrot") {
    r1 = r2 = r3 = r4 = true;
  } else if (m == "smoothrot-all") {
    online_had_inputs = r2 = r3 = r4 = true;  // smoothing + Hadamard before every linear input, no fused R1
  } else if (m != "rtn" && m != "smoothquant" && m != "duquant" && m != "crossquant") {
    fail("unknown --method '" + m + "' (available: " + method_list() + ")");
  }
  method = m;
}

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
  j["smoothing"] = {{"alpha", smooth_alpha}, {"online_hadamard_inputs", online_had_inputs}};
  j["duquant"] = {{"alpha", dq_alpha}, {"block", dq_block}, {"steps", dq_steps}, {"permute", dq_permute}};
  j["crossquant"] = {{"enabled", crossquant}, {"alpha", cq_alpha}};
  std::vector<std::string> tnames;
  for (auto& [k, _] : tensors) tnames.push_back(k);
  j["tensors"] = tnames;
  if (method == "kurtail")
    j["kurtail"] = {{"target", kurtail.target}, {"squared", kurtail.squared}, {"budget", kurtail.budget},
                    {"iters", kurtail.iters}, {"lr", kurtail.lr}, {"momentum", kurtail.momentum},
                    {"learn_r1", kurtail.learn_r1}, {"learn_r2", kurtail.learn_r2}};
  return j.dump(2);
}

Recipe Recipe::from_json(const std::string& text, const std::string& path) {
  Recipe r;
  try {
    json j = parse_json(text, path);
    if (j.value("format", "") != "kurtail-recipe") fail(path, "not a kurtail recipe (format field missing)");
    r.version = json_number<int>(j.at("version"), path, "version");
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
    r.seed = json_number_or<uint64_t>(rot, "seed", 0, path);
    r.r3_kind = rot.value("r3_kind", "hadamard");
    r.r4_kind = rot.value("r4_kind", "hadamard");
    r.r3_seed = json_number_or<uint64_t>(rot, "r3_seed", 0, path);
    r.r4_seed = json_number_or<uint64_t>(rot, "r4_seed", 0, path);
    if (j.contains("gptq")) {
      r.percdamp = json_number_or<double>(j["gptq"], "percdamp", 0.01, path);
      r.gptq_block = json_number_or<int>(j["gptq"], "block", 128, path);
      r.act_order = j["gptq"].value("act_order", false);
    }
    if (j.contains("smoothing")) {
      r.smooth_alpha = json_number_or<double>(j["smoothing"], "alpha", 0.5, path);
      r.online_had_inputs = j["smoothing"].value("online_hadamard_inputs", false);
    }
    if (j.contains("duquant")) {
      r.dq_alpha = json_number_or<double>(j["duquant"], "alpha", 0.6, path);
      r.dq_block = json_number_or<int>(j["duquant"], "block", 128, path);
      r.dq_steps = json_number_or<int>(j["duquant"], "steps", 256, path);
      r.dq_permute = j["duquant"].value("permute", true);
    }
    if (j.contains("crossquant")) {
      r.crossquant = j["crossquant"].value("enabled", false);
      r.cq_alpha = json_number_or<double>(j["crossquant"], "alpha", 0.5, path);
    }
    if (j.contains("kurtail")) {
      const json& k = j["kurtail"];
      r.kurtail.target = json_number_or<double>(k, "target", 1.8, path);
      r.kurtail.squared = k.value("squared", true);
      r.kurtail.budget = json_number_or<int>(k, "budget", 2048, path);
      r.kurtail.iters = json_number_or<int>(k, "iters", 200, path);
      r.kurtail.lr = json_number_or<double>(k, "lr", 0.1, path);
      r.kurtail.momentum = json_number_or<double>(k, "momentum", 0.9, path);
      r.kurtail.learn_r1 = k.value("learn_r1", true);
      r.kurtail.learn_r2 = k.value("learn_r2", true);
    }
    if (j.contains("calibration")) {
      r.calib = j["calibration"].value("text", "");
      r.nsamples = json_number_or<int>(j["calibration"], "nsamples", 0, path);
      r.seqlen = json_number_or<int>(j["calibration"], "seqlen", 0, path);
    }
  } catch (const json::exception& e) {
    fail(path, std::string("malformed recipe: ") + e.what());
  }
  return r;
}

std::string site_tensor_name(const std::string& kind, int layer, Site site, const std::string& what) {
  return kind + "." + std::to_string(layer) + "." + site_name(site) + "." + what;
}

namespace {
bool parse_site_tensor(const std::string& name, std::string* kind, int* layer, Site* site, std::string* what) {
  // kind.L.site.what
  size_t a = name.find('.'), b = name.find('.', a + 1), c = name.find('.', b + 1);
  if (a == std::string::npos || b == std::string::npos || c == std::string::npos) return false;
  *kind = name.substr(0, a);
  try {
    *layer = std::stoi(name.substr(a + 1, b - a - 1));
  } catch (...) {
    return false;
  }
  std::string sn = name.substr(b + 1, c - b - 1);
  for (int i = 0; i < kNumSites; i++)
    if (sn == site_name((Site)i)) {
      *site = (Site)i;
      *what = name.substr(c + 1);
      return true;
    }
  return false;
}
}  // namespace

void RecipeHooks::set_site_transform(int layer, Site site, SiteTransform t) { site_tf_[{layer, (int)site}] = std::move(t); }

bool RecipeHooks::has_site_transform(Site site) const {
  for (const auto& kv : site_tf_)
    if (kv.first.second == (int)site) return true;
  return false;
}

void RecipeHooks::set_crossquant_colmax(int layer, Site site, std::vector<float> c) { cq_[{layer, (int)site}] = std::move(c); }

RecipeHooks::RecipeHooks(const Recipe& r, const ModelSpec& s, bool qa) : quantize_activations(qa), r_(r), s_(s) {
  if (r.online_had_inputs) rin_ = Rotation::hadamard(s.hidden, false, r.seed + 5);
  std::map<std::pair<int, int>, SiteTransform> tf;
  for (auto& [name, t] : r.tensors) {
    std::string kind, what;
    int layer;
    Site site;
    if (!parse_site_tensor(name, &kind, &layer, &site, &what) || layer < 0 || layer > s.n_layers)
      fail("recipe tensor '" + name + "' has an unknown name");
    if (kind == "cq" && what == "colmax") {
      cq_[{layer, (int)site}] = t.data;
      continue;
    }
    if (kind != "site") fail("recipe tensor '" + name + "' has an unknown kind");
    SiteTransform& st = tf[{layer, (int)site}];
    st.n = (int)(site == Site::DownIn ? s.ffn : site == Site::OIn ? s.q_dim() : s.hidden);
    if (what == "smooth") st.smooth = t.data;
    else if (what == "rot_a") st.rot_a = t;
    else if (what == "rot_b") st.rot_b = t;
    else if (what == "perm") st.perm.assign(t.data.begin(), t.data.end());
    else fail("recipe tensor '" + name + "' has an unknown part");
  }
  for (auto& [k, st] : tf) {
    st.validate("recipe site transform " + std::to_string(k.first) + "." + site_name((Site)k.second));
    site_tf_[k] = std::move(st);
  }
  auto make = [](const std::string& kind, int n, uint64_t seed) {
    return kind == "random_orthogonal" ? Rotation::random_orthogonal(n, seed) : Rotation::hadamard(n, false, seed);
  };
  if (r.r3) {
    r3_ = std::make_shared<const Rotation>(make(r.r3_kind, s.head_dim, r.r3_seed));
    r3_rows_ = std::make_shared<const RotationRows>(r3_);
  }
  if (r.r4) r4_ = std::make_shared<const Rotation>(make(r.r4_kind, s.ffn, r.r4_seed));
}

void RecipeHooks::on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) {
  if (r_.r3 && (site == Site::Q || (site == Site::K && !r3_in_kv_cache)))
    rotate_heads(x, rows, (int)(cols / s_.head_dim), *r3_);
  auto tf = site_tf_.find({layer, (int)site});
  if (tf != site_tf_.end()) tf->second.apply(x, rows);
  if (r_.online_had_inputs && (site == Site::AttnIn || site == Site::MlpIn)) rin_.apply(x, rows);
  if (r_.r4 && site == Site::DownIn && !r4_in_down_linears) r4_->apply(x, rows);
  if (!quantize_activations) return;
  switch (site) {
    case Site::AttnIn: case Site::OIn: case Site::MlpIn: case Site::DownIn: {
      if (linears_quantize_inputs) break;
      auto cq = cq_.find({layer, (int)site});
      if (r_.crossquant && cq != cq_.end()) crossquant_fake_quant_ref(x, rows, cols, cq->second.data(), r_.cq_alpha, r_.a);
      else fake_quant_ref(x, rows, cols, r_.a);
      break;
    }
    case Site::K:
      if (!cache_quantizes_kv) fake_quant_ref(x, rows, cols, r_.k);
      break;
    case Site::V:
      if (!cache_quantizes_kv) fake_quant_ref(x, rows, cols, r_.v);
      break;
    case Site::LmHeadIn:
      if (r_.quant_lm_head) fake_quant_ref(x, rows, cols, r_.a);
      break;
    case Site::Q: break;  // queries stay in full precision
  }
}

}  // namespace kt
