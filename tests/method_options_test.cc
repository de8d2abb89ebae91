// One file per method behind quant/method.h, options declared once (quant/options.h): every
// registry entry constructs; every option round-trips through recipe.json; Recipe() and old
// recipes without the option sections get the declared defaults; the quantize flags are
// exactly the declared ones and each lands in its recipe field; unknown methods are refused
// with the list of names.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "quant/method.h"
#include "quant/methods.h"
#include "quant/pipeline.h"
#include "quant/recipe.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

// Every option of a recipe as (section.key -> value), through the visitors.
struct Collect : OptionVisitor {
  std::string section;
  std::map<std::string, double> v;
  void put(const Opt& o, double x) { v[section + "." + o.key] = x; }
  void real(double& x, double, const Opt& o, RealRange) override { put(o, x); }
  void real_f32(double& x, double, const Opt& o, RealRange) override { put(o, x); }
  void integer(int& x, int, const Opt& o, IntRange) override { put(o, x); }
  void flag(bool& x, bool, const Opt& o) override { put(o, x); }
  void named_bool(bool& x, bool, const Opt& o, const char*, const char*) override { put(o, x); }
};
std::map<std::string, double> collect(Recipe& r, bool only_written = false) {
  Collect c;
  for (const OptionSection* s : option_sections()) {
    if (only_written && !s->in_every_recipe && !method_has_section(r.method, *s)) continue;
    c.section = s->key;
    s->visit(r, c);
  }
  return c.v;
}

// A value other than the default and inside the declared range (and the load-time one).
double other_real(double d, RealRange r) { return d > r.lo ? r.lo + (d - r.lo) * 0.75 : d + 0.25 * (r.hi - r.lo); }
int other_int(int d, IntRange r) { return d > r.lo ? r.lo + (d - r.lo) / 2 : d + 1; }

// Sets every option that is not derived from the method to a non-default value.
struct Perturb : OptionVisitor {
  void real(double& x, double d, const Opt&, RealRange r) override { x = other_real(d, r); }
  void real_f32(double& x, double d, const Opt&, RealRange r) override { x = other_real(d, r); }
  void integer(int& x, int d, const Opt&, IntRange r) override { x = other_int(d, r); }
  void flag(bool& x, bool d, const Opt&) override { x = !d; }
  void named_bool(bool& x, bool d, const Opt&, const char*, const char*) override { x = !d; }
};

TEST(MethodOptions, EveryRegistryEntryConstructsAndSectionsAreListedOnce) {
  auto secs = option_sections();
  ASSERT_FALSE(secs.empty());
  EXPECT_EQ(secs[0], &kGptqOptions);
  EXPECT_EQ(std::set<const OptionSection*>(secs.begin(), secs.end()).size(), secs.size());
  std::set<std::string> keys;
  for (const OptionSection* s : secs) EXPECT_TRUE(keys.insert(s->key).second) << s->key;
  for (const MethodInfo& m : methods()) {
    ASSERT_NE(m.make, nullptr) << m.name;
    std::unique_ptr<Method> meth = m.make();
    ASSERT_NE(meth, nullptr) << m.name;
    const Needs n = meth->needs();
    if (n.sample_rows > 0) {
      EXPECT_TRUE(n.layer_stats) << m.name;
    }
    if (m.options) {
      EXPECT_NE(std::find(secs.begin(), secs.end(), m.options), secs.end()) << m.name;
    }
  }
}

TEST(MethodOptions, EveryOptionRoundTripsThroughRecipeJson) {
  for (const MethodInfo& m : methods()) {
    Recipe r;
    r.set_method(m.name);
    const auto defaults = collect(r);
    Perturb p;
    for (const OptionSection* s : option_sections()) s->visit(r, p);
    // derived from the method, not options: validation insists they match it
    Recipe implied;
    implied.set_method(m.name);
    r.online_had_inputs = implied.online_had_inputs;
    r.crossquant = r.method == "crossquant";
    const std::string text = r.to_json();
    Recipe back = Recipe::from_json(text, "recipe.json");
    const auto want = collect(r, true), got = collect(back, true);
    EXPECT_EQ(got, want) << m.name;
    EXPECT_EQ(back.to_json(), text) << m.name;
    // the round trip carried real changes: most written options differ from their defaults
    int changed = 0;
    for (auto& [k, v] : want) changed += v != defaults.at(k);
    EXPECT_GE(changed, (int)want.size() - 2) << m.name;
    // method-only sections are written only for their methods
    nlohmann::json j = nlohmann::json::parse(text);
    for (const OptionSection* s : option_sections())
      EXPECT_EQ(j.contains(s->key), s->in_every_recipe || m.options == s) << m.name << " " << s->key;
  }
}

TEST(MethodOptions, DefaultsAreTheDeclaredOnesAndOldRecipesGetThem) {
  // Recipe() holds exactly the defaults the visit functions declare.
  struct Defaults : OptionVisitor {
    std::string section;
    std::map<std::string, double> v;
    void put(const Opt& o, double d) { v[section + "." + o.key] = d; }
    void real(double&, double d, const Opt& o, RealRange) override { put(o, d); }
    void real_f32(double&, double d, const Opt& o, RealRange) override { put(o, d); }
    void integer(int&, int d, const Opt& o, IntRange) override { put(o, d); }
    void flag(bool&, bool d, const Opt& o) override { put(o, d); }
    void named_bool(bool&, bool d, const Opt& o, const char*, const char*) override { put(o, d); }
  };
  Recipe r;
  Defaults d;
  for (const OptionSection* s : option_sections()) {
    d.section = s->key;
    s->visit(r, d);
  }
  EXPECT_EQ(collect(r), d.v);
  EXPECT_EQ(r.kurtail.iters, 200);
  EXPECT_EQ(r.dq_block, 128);
  EXPECT_DOUBLE_EQ(r.smooth_alpha, 0.5);
  EXPECT_DOUBLE_EQ(r.percdamp, 0.01);
  // A recipe from before the option sections existed: every option at its default.
  Recipe q;
  q.set_method("quarot");
  Perturb p;
  for (const OptionSection* s : option_sections()) s->visit(q, p);
  q.online_had_inputs = false;
  q.crossquant = false;
  nlohmann::json j = nlohmann::json::parse(q.to_json());
  for (const OptionSection* s : option_sections()) j.erase(s->key);
  Recipe old = Recipe::from_json(j.dump(2), "recipe.json");
  Recipe fresh;
  fresh.method = "quarot";
  EXPECT_EQ(collect(old), collect(fresh));
}

TEST(MethodOptions, MethodOnlySectionIsRefusedForOtherMethods) {
  Recipe r;
  r.set_method("kurtail");
  nlohmann::json j = nlohmann::json::parse(r.to_json());
  j["method"] = "duquant";
  try {
    Recipe::from_json(j.dump(), "recipe.json");
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "recipe.json: 'kurtail' settings in a recipe whose method is 'duquant' (only method kurtail has them)");
  }
}

TEST(MethodOptions, UnknownMethodIsRefusedWithTheList) {
  auto m = Model::open(test::tinyllama());
  QuantizeOptions o;
  o.progress = false;
  o.recipe.method = "nosuch";
  try {
    quantize_model(*m, o);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "unknown method 'nosuch' (available: " + method_names() + ")");
  }
  auto h = test::run_cli("quantize --method nosuch --out /nonexistent/x");
  EXPECT_NE(h.code, 0);
  EXPECT_NE(h.err.find(method_names().substr(0, 11)), std::string::npos) << h.err;
}

// The declared flags, each as the CLI gets it, and what recipe.json must then record.
struct Flags : OptionVisitor {
  std::vector<std::string> names;
  std::string args;
  std::map<std::string, double> want;  // section.key -> value
  std::string section;
  void add(const Opt& o, const std::string& val, double x) {
    names.push_back(o.flag);
    args += std::string(" ") + o.flag + (val.empty() ? "" : " " + val);
    want[section + "." + o.key] = x;
  }
  static std::string num(double x) {
    char b[64];
    std::snprintf(b, sizeof b, "%.17g", x);
    return b;
  }
  void real(double&, double d, const Opt& o, RealRange r) override {
    if (o.flag) add(o, num(other_real(d, r)), other_real(d, r));
  }
  void real_f32(double&, double d, const Opt& o, RealRange r) override {
    if (o.flag) add(o, num(other_real(d, r)), (double)(float)other_real(d, r));
  }
  void integer(int&, int d, const Opt& o, IntRange r) override {
    const int x = d != r.lo + 1 ? r.lo + 1 : r.lo + 2;  // small: --kt-iters 1, --kt-tokens 2 keep the run short
    if (o.flag) add(o, std::to_string(x), x);
  }
  void flag(bool&, bool d, const Opt& o) override {
    if (o.flag) add(o, "", !d);
  }
  void named_bool(bool&, bool d, const Opt& o, const char* t, const char* f) override {
    if (o.flag) add(o, d ? f : t, !d);
  }
};

TEST(MethodOptions, QuantizeFlagsAreExactlyTheDeclaredOnesAndLandInTheRecipe) {
  Recipe r;
  Flags f;
  for (const OptionSection* s : option_sections()) {
    f.section = s->key;
    s->visit(r, f);
  }
  ASSERT_GE(f.names.size(), 10u);
  // --help lists each declared flag once, in the declared order.
  auto h = test::run_cli("quantize --help");
  ASSERT_EQ(h.code, 0) << h.err;
  size_t pos = 0;
  for (const std::string& n : f.names) {
    const std::string tok = "  " + n + " ";
    size_t at = h.out.find(tok);
    ASSERT_NE(at, std::string::npos) << n << " missing from quantize --help";
    EXPECT_EQ(h.out.find(tok, at + 1), std::string::npos) << n << " listed twice";
    EXPECT_GT(at, pos) << n << " out of order";
    pos = at;
  }
  // Every flag given a non-default value lands in its recipe.json field: once per method whose
  // section only its own recipes carry (kurtail, spinquant), each run checking the sections it writes.
  const std::string dir = test::temp_dir("mopts");
  size_t checked = 0;
  for (const char* method : {"kurtail", "spinquant"}) {
    auto q = test::run_cli(std::string("quantize -q --method ") + method +
                           " --truncate-layers 1 --nsamples 2 --seqlen 32 --out " + dir + "/q --force" + f.args);
    ASSERT_EQ(q.code, 0) << f.args << "\n" << q.err;
    Recipe got = Recipe::from_json(read_file(dir + "/q/recipe.json", SIZE_MAX), "recipe.json");
    auto have = collect(got, true);
    for (auto& [k, v] : f.want)
      if (have.count(k)) {
        EXPECT_EQ(have.at(k), v) << method << ": " << k;
        checked++;
      } else {
        EXPECT_FALSE(k.rfind(std::string(method) + ".", 0) == 0) << method << "'s own option " << k << " not written";
      }
  }
  EXPECT_GE(checked, f.want.size()) << "every declared flag checked at least once";
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace kt
