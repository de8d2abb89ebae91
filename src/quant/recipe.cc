#include "quant/recipe.h"

#include "io/json_checked.h"
#include "quant/methods.h"

#include <nlohmann/json.hpp>

#include <set>

#include "quant/validate_model.h"
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

// Typed access to one JSON object of recipe.json: every read names its key ("weights.bits"),
// values of the wrong type are refused (never cast), and finish() refuses keys nobody read.
// Absent optional keys keep their defaults (older writers did not emit them); null is a type error.
class Fields {
 public:
  Fields(const json& j, std::string prefix, const std::string& path) : j_(j), prefix_(std::move(prefix)), path_(path) {
    if (!j.is_object())
      fail(path, (prefix_.empty() ? std::string("recipe") : quote(prefix_)) + " must be an object, got " + json_type_name(j));
  }
  std::string key(const std::string& k) const { return prefix_.empty() ? k : prefix_ + "." + k; }
  bool has(const char* k) const { return j_.contains(k); }
  const json* find(const char* k, bool required) {
    seen_.insert(k);
    auto it = j_.find(k);
    if (it == j_.end()) {
      if (required) fail(path_, "missing key " + quote(key(k)));
      return nullptr;
    }
    return &*it;
  }
  bool boolean(const char* k, bool dflt, bool required = false) {
    const json* v = find(k, required);
    if (!v) return dflt;
    if (!v->is_boolean()) fail(path_, quote(key(k)) + " must be a boolean, got " + json_type_name(*v));
    return v->get<bool>();
  }
  std::string string(const char* k, const std::string& dflt, bool required = false) {
    const json* v = find(k, required);
    if (!v) return dflt;
    if (!v->is_string()) fail(path_, quote(key(k)) + " must be a string, got " + json_type_name(*v));
    return v->get<std::string>();
  }
  template <class T>
  T number(const char* k, T dflt, bool required = false) {
    const json* v = find(k, required);
    return v ? json_number<T>(*v, path_, key(k)) : dflt;
  }
  Fields object(const char* k, bool required = false) {
    static const json empty = json::object();
    const json* v = find(k, required);
    return Fields(v ? *v : empty, key(k), path_);
  }
  // Keys present but never read: a typo or a newer writer; either way its intent would be lost.
  void finish() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!seen_.count(it.key())) fail(path_, "unknown key " + quote(key(it.key())));
  }

 private:
  const json& j_;
  std::string prefix_;
  const std::string& path_;
  std::set<std::string> seen_;
};

QuantSpec spec_from(Fields f, const std::string& path) {
  QuantSpec s;
  s.bits = f.number<int>("bits", 16, true);
  s.symmetric = f.boolean("symmetric", true, true);
  std::string g = f.string("granularity", "", true);
  if (g == "tensor") s.gran = Granularity::PerTensor;
  else if (g == "row") s.gran = Granularity::PerRow;
  else if (g == "group") s.gran = Granularity::PerGroup;
  else fail(path, quote(f.key("granularity")) + " is " + quote(g) + "; must be tensor, row or group");
  s.group = f.number<int>("group", 0);
  s.clip_ratio = f.number<float>("clip_ratio", 1.0f);
  s.mse_search = f.boolean("mse_search", false);
  s.mse_grid = f.number<int>("mse_grid", 100);
  s.mse_maxshrink = f.number<float>("mse_maxshrink", 0.8f);
  s.mse_norm = f.number<float>("mse_norm", 2.4f);
  const std::string sd = f.string("scale_dtype", "f32");
  if (sd != "f32" && sd != "f16") fail(path, quote(f.key("scale_dtype")) + " is " + quote(sd) + "; must be f32 or f16");
  s.scale_f16 = sd == "f16";
  f.finish();
  return s;
}

// The option visitors (quant/options.h): defaults, recipe.json writer, recipe.json reader.
class SetDefaults : public OptionVisitor {
 public:
  void real(double& v, double d, const Opt&, RealRange) override { v = d; }
  void real_f32(double& v, double d, const Opt&, RealRange) override { v = d; }
  void integer(int& v, int d, const Opt&, IntRange) override { v = d; }
  void flag(bool& v, bool d, const Opt&) override { v = d; }
  void named_bool(bool& v, bool d, const Opt&, const char*, const char*) override { v = d; }
};

class WriteJson : public OptionVisitor {
 public:
  explicit WriteJson(json& j) : j_(j) {}
  void real(double& v, double, const Opt& o, RealRange) override { j_[o.key] = v; }
  void real_f32(double& v, double, const Opt& o, RealRange) override { j_[o.key] = v; }
  void integer(int& v, int, const Opt& o, IntRange) override { j_[o.key] = v; }
  void flag(bool& v, bool, const Opt& o) override { j_[o.key] = v; }
  void named_bool(bool& v, bool, const Opt& o, const char*, const char*) override { j_[o.key] = v; }

 private:
  json& j_;
};

// Absent keys keep the declared default (older writers did not emit every key).
class ReadJson : public OptionVisitor {
 public:
  explicit ReadJson(Fields& f) : f_(f) {}
  void real(double& v, double d, const Opt& o, RealRange) override { v = f_.number<double>(o.key, d); }
  void real_f32(double& v, double d, const Opt& o, RealRange) override { v = f_.number<double>(o.key, d); }
  void integer(int& v, int d, const Opt& o, IntRange) override { v = f_.number<int>(o.key, d); }
  void flag(bool& v, bool d, const Opt& o) override { v = f_.boolean(o.key, d); }
  void named_bool(bool& v, bool d, const Opt& o, const char*, const char*) override { v = f_.boolean(o.key, d); }

 private:
  Fields& f_;
};

}  // namespace

Recipe::Recipe() {
  SetDefaults d;
  for (const OptionSection* s : option_sections()) s->visit(*this, d);
}

const char* Recipe::method_list() {
  static const std::string names = method_names();
  return names.c_str();
}

void Recipe::set_method(const std::string& m) {
  const MethodInfo* info = find_method(m);
  if (!info) fail("unknown --method " + quote(m) + " (available: " + method_names() + ")");
  r1 = info->r1;
  r2 = info->r2;
  r3 = info->r3;
  r4 = info->r4;
  online_had_inputs = info->online_had_inputs;
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
            {"lm_head_bits", lm_head_bits},
            {"rotations",
             {{"r1", r1}, {"r2", r2}, {"r3", r3}, {"r4", r4}, {"r1_random_signs", r1_random_signs}, {"seed", seed},
              {"r3_kind", r3_kind}, {"r4_kind", r4_kind}, {"r3_seed", r3_seed}, {"r4_seed", r4_seed}}},
            {"calibration", {{"text", calib}, {"nsamples", nsamples}, {"seqlen", seqlen}}}};
  for (const OptionSection* s : option_sections())
    if (s->in_every_recipe || method_has_section(method, *s)) {
      WriteJson w(j[s->key] = json::object());
      s->visit(const_cast<Recipe&>(*this), w);  // the writer only reads the fields
    }
  std::vector<std::string> tnames;
  for (auto& [k, _] : tensors) tnames.push_back(k);
  j["tensors"] = tnames;
  return j.dump(2);
}

Recipe Recipe::from_json(const std::string& text, const std::string& path) {
  Recipe r;
  json j = parse_json(text, path);
  try {
    Fields top(j, "", path);
    if (top.string("format", "") != "kurtail-recipe") fail(path, "not a kurtail recipe (format field missing)");
    r.version = top.number<int>("version", 0, true);
    if (r.version != 1) fail(path, "unsupported recipe version " + std::to_string(r.version));
    r.method = top.string("method", "", true);
    r.weight_algo = top.string("weight_algo", "rtn");
    r.w = spec_from(top.object("weights", true), path);
    r.a = spec_from(top.object("activations", true), path);
    r.k = spec_from(top.object("k_cache", true), path);
    r.v = spec_from(top.object("v_cache", true), path);
    r.quant_lm_head = top.boolean("quant_lm_head", false);
    r.lm_head_bits = top.number<int>("lm_head_bits", 0);
    Fields rot = top.object("rotations", true);
    r.r1 = rot.boolean("r1", false, true);
    r.r2 = rot.boolean("r2", false, true);
    r.r3 = rot.boolean("r3", false, true);
    r.r4 = rot.boolean("r4", false, true);
    r.r1_random_signs = rot.boolean("r1_random_signs", true);
    r.seed = rot.number<uint64_t>("seed", 0);
    r.r3_kind = rot.string("r3_kind", "hadamard");
    r.r4_kind = rot.string("r4_kind", "hadamard");
    r.r3_seed = rot.number<uint64_t>("r3_seed", 0);
    r.r4_seed = rot.number<uint64_t>("r4_seed", 0);
    rot.finish();
    for (const OptionSection* s : option_sections()) {
      if (!s->in_every_recipe) {
        if (!top.has(s->key)) continue;
        if (!method_has_section(r.method, *s))
          fail(path, quote(s->key) + " settings in a recipe whose method is " + quote(r.method) + " (" +
                         section_methods(*s) + ")");
      }
      Fields f = top.object(s->key);
      ReadJson rd(f);
      s->visit(r, rd);
      f.finish();
    }
    Fields cal = top.object("calibration");
    r.calib = cal.string("text", "");
    r.nsamples = cal.number<int>("nsamples", 0);
    r.seqlen = cal.number<int>("seqlen", 0);
    cal.finish();
    // The names of the kurtail.* tensors; their data is in model.safetensors (load_validated_recipe).
    if (const json* t = top.find("tensors", false)) {
      if (!t->is_array()) fail(path, "'tensors' must be an array of names, got " + std::string(json_type_name(*t)));
      for (const json& n : *t) {
        if (!n.is_string()) fail(path, "'tensors' must be an array of names, found a " + std::string(json_type_name(n)));
        if (!r.tensors.emplace(n.get<std::string>(), Tensor()).second)
          fail(path, "'tensors' lists " + quote(n.get<std::string>()) + " twice");
      }
    }
    top.finish();
  } catch (const json::exception& e) {
    fail(path, std::string("malformed recipe: ") + e.what());
  }
  validate_recipe(r, path);
  return r;
}

QuantSpec Recipe::lm_head_w() const {
  QuantSpec q = w;
  if (lm_head_bits > 0 && q.enabled()) q.bits = lm_head_bits;
  return q;
}

QuantSpec Recipe::lm_head_a() const {
  QuantSpec q = a;
  if (lm_head_bits > 0 && q.enabled()) q.bits = lm_head_bits;
  return q;
}

Rotation r4_rotation(const Recipe& r, int n) {
  return r.r4_block > 0 ? Rotation::block_hadamard(n, r.r4_block) : Rotation::hadamard(n, false, r.r4_seed);
}

bool r1_runs_online(const Recipe& r, const ModelSpec& s) { return r.r1 && arch_table(s).has(Field::PostAttnNorm); }

std::string site_tensor_name(const std::string& kind, int layer, Site site, const std::string& what) {
  return kind + "." + std::to_string(layer) + "." + site_name(site) + "." + what;
}

}  // namespace kt
