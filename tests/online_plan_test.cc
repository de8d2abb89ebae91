// The compiled online plan computes exactly what the hook it replaced (RecipeHooks, kept below
// verbatim as LegacyHooks, with the public flags callers used to set after construction)
// computed, bit for bit, for every combination of what the execution provides: fake
// quantization, transforms only, integer linears with and without R4 fused into down_proj, a
// quantized K/V cache with and without R3 fused into its write. A Session makes a quantized
// cache exactly when its plan leaves K/V to the cache.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <type_traits>

#include "core/quantizer.h"
#include "export/quantized_model.h"
#include "quant/online_plan.h"
#include "quant/pipeline.h"
#include "quant/session.h"
#include "runtime/real_model.h"
#include "runtime/runner.h"
#include "test_util.h"
#include "transform/fuse.h"
#include "util/error.h"

namespace kt {
namespace {

// The hook before the plan (quant/recipe.cc at commit aa91470), flags and all.
class LegacyHooks : public Hooks {
 public:
  LegacyHooks(const Recipe& r, const ModelSpec& s, bool qa) : quantize_activations(qa), r_(r), s_(s) {
    if (r.online_had_inputs) rin_ = Rotation::hadamard(s.hidden, false, r.seed + 5);
    for (auto& [name, t] : r.tensors) {
      // kind.L.site.what
      size_t a = name.find('.'), b = name.find('.', a + 1), c = name.find('.', b + 1);
      const std::string kind = name.substr(0, a), sn = name.substr(b + 1, c - b - 1), what = name.substr(c + 1);
      const int layer = std::stoi(name.substr(a + 1, b - a - 1));
      Site site = Site::Q;
      for (int i = 0; i < kNumSites; i++)
        if (sn == site_name((Site)i)) site = (Site)i;
      if (kind == "cq") {
        cq_[{layer, (int)site}] = t.data;
        continue;
      }
      SiteTransform& st = site_tf_[{layer, (int)site}];
      st.n = (int)(site == Site::DownIn ? s.ffn : site == Site::OIn ? s.q_dim() : s.hidden);
      if (what == "smooth") st.smooth = t.data;
      else if (what == "rot_a") st.rot_a = t;
      else if (what == "rot_b") st.rot_b = t;
      else if (what == "perm") st.perm.assign(t.data.begin(), t.data.end());
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
  void on_activation(int layer, Site site, float* x, int64_t rows, int64_t cols) override {
    if (r_.r3 && (site == Site::Q || (site == Site::K && !r3_in_kv_cache))) rotate_heads(x, rows, (int)(cols / s_.head_dim), *r3_);
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
      case Site::K: if (!cache_quantizes_kv) fake_quant_ref(x, rows, cols, r_.k); break;
      case Site::V: if (!cache_quantizes_kv) fake_quant_ref(x, rows, cols, r_.v); break;
      case Site::LmHeadIn: if (r_.quant_lm_head) fake_quant_ref(x, rows, cols, r_.a); break;
      case Site::Q: break;
    }
  }
  const RowTransform* k_head_transform() const override { return r3_in_kv_cache ? r3_rows_.get() : nullptr; }
  bool quantize_activations, linears_quantize_inputs = false, cache_quantizes_kv = false;
  bool r4_in_down_linears = false, r3_in_kv_cache = false;

 private:
  Recipe r_;
  ModelSpec s_;
  Rotation rin_;
  std::shared_ptr<const Rotation> r3_, r4_;
  std::shared_ptr<const RotationRows> r3_rows_;
  std::map<std::pair<int, int>, SiteTransform> site_tf_;
  std::map<std::pair<int, int>, std::vector<float>> cq_;
};

struct Combo {
  const char* name;
  bool quantize, kernels, down_r4, cache, cache_r3;
};
const Combo kCombos[] = {
    {"fake", true, false, false, false, false},          {"transforms only", false, false, false, false, false},
    {"fake + int KV cache", true, false, false, true, false}, {"fake + int KV cache + R3 in cache", true, false, false, true, true},
    {"kernels", true, true, false, false, false},        {"kernels + R4 in down", true, true, true, false, false},
    {"kernels + R4 + KV + R3 (run)", true, true, true, true, true}, {"kernels + KV, rotations in hook", true, true, false, true, false},
};

std::vector<float> run(const Model& m, Hooks* h, const QuantSpec& k, const QuantSpec& v, bool cache,
                       const std::vector<int32_t>& toks) {
  const int n = (int)toks.size();
  if (!cache) return forward(m, toks.data(), 1, n, nullptr, h);
  KVCache c(m.spec, 1, n, k, v);
  return forward(m, toks.data(), 1, n, &c, h);
}

void check_method(const std::string& method, int abits, int kvbits) {
  auto m = Model::open(test::tinyllama());
  QuantizeOptions o;
  o.progress = false;
  o.recipe.set_method(method);
  o.recipe.set_bits(4, abits, kvbits, m->spec.head_dim);
  o.recipe.dq_steps = 16;
  o.recipe.w.mse_search = false;  // speed: the clip search does not change what the plan computes
  o.calib_path = test::data() + "/text/calib.txt";
  o.nsamples = 4;
  o.seqlen = 64;
  quantize_model(*m, o);
  const Recipe& r = o.recipe;
  const std::string tmp = test::temp_dir("plan"), dir = tmp + "/q";
  save_quantized(*m, r, dir, false);
  std::vector<int32_t> toks;
  for (int i = 0; i < 24; i++) toks.push_back(1 + i * 331 % 8000);
  std::string why;
  const bool kernels_ok = recipe_runs_on_kernels(r, &why);
  int compared = 0;
  for (const Combo& c : kCombos) {
    if (c.kernels && !kernels_ok) continue;
    std::shared_ptr<Model> pm = Model::open(dir);
    PackReport pr;
    if (c.kernels) {
      ASSERT_GT((pr = pack_model_for_kernels(*pm, r, true)).packed, 0);
    }
    OnlineCaps caps;
    caps.quantize_activations = c.quantize;
    caps.linears_quantize_inputs = c.kernels;
    caps.down_linears_apply_r4 = c.down_r4;
    caps.cache_quantizes_kv = c.cache;
    caps.cache_applies_r3 = c.cache_r3;
    auto plan = plan_online(r, pm->spec, caps);
    fuse_online_rotations(*pm, *plan);
    Session s(pm, r, plan);
    LegacyHooks legacy(r, pm->spec, c.quantize);
    legacy.linears_quantize_inputs = c.kernels;
    legacy.cache_quantizes_kv = c.cache;
    // what the old fuse_online_rotations set
    legacy.r3_in_kv_cache = r.r3 && c.cache && c.cache_r3;
    legacy.r4_in_down_linears = r.r4 && c.kernels && c.down_r4;
    EXPECT_EQ(plan->r3_in_kv_cache(), legacy.r3_in_kv_cache) << method << ", " << c.name;
    EXPECT_EQ(plan->r4_in_down_linears(), legacy.r4_in_down_linears) << method << ", " << c.name;
    EXPECT_EQ(s.quantizes_kv_cache(), c.cache && r.k.enabled()) << method << ", " << c.name;
    const QuantSpec k = c.cache ? r.k : QuantSpec{}, v = c.cache ? r.v : QuantSpec{};
    auto want = run(*pm, &legacy, k, v, c.cache && k.enabled(), toks);
    KVCache cache = s.new_cache(1, (int)toks.size());
    auto got = forward(s.model(), toks.data(), 1, (int)toks.size(), s.quantizes_kv_cache() ? &cache : nullptr, s.hooks());
    EXPECT_EQ(got, want) << method << ", " << c.name;
    compared++;
  }
  EXPECT_GE(compared, kernels_ok ? 8 : 4);
  std::filesystem::remove_all(tmp);
}

TEST(OnlinePlan, QuarotEveryCapsCombinationBitIdenticalToHook) { check_method("quarot", 4, 4); }
TEST(OnlinePlan, DuquantEveryCapsCombinationBitIdenticalToHook) { check_method("duquant", 8, 8); }
TEST(OnlinePlan, SmoothrotAllBitIdenticalToHook) { check_method("smoothrot-all", 4, 4); }
TEST(OnlinePlan, CrossquantBitIdenticalToHook) { check_method("crossquant", 4, 16); }

TEST(OnlinePlan, IsImmutableAndSaysWhatRunsWhere) {
  // no setters, no copies; plan_online hands out a const plan
  static_assert(!std::is_copy_assignable_v<OnlinePlan> && !std::is_copy_constructible_v<OnlinePlan>);
  static_assert(std::is_same_v<decltype(plan_online(Recipe{}, ModelSpec{}, OnlineCaps{})), std::shared_ptr<const OnlinePlan>>);
  auto m = Model::open(test::tinyllama());
  Recipe r;
  r.set_method("quarot");
  r.set_bits(4, 4, 4, m->spec.head_dim);
  r.r3_seed = r.seed + 3;
  r.r4_seed = r.seed + 4;
  using K = OnlineStep::Kind;
  auto fake = plan_online(r, m->spec);
  EXPECT_EQ(fake->site(0, Site::Q).steps.size(), 1u);
  EXPECT_EQ(fake->site(0, Site::Q).steps[0].kind, K::R3Heads);
  EXPECT_EQ(fake->site(0, Site::Q).where, QuantWhere::None);
  EXPECT_EQ(fake->site(0, Site::K).where, QuantWhere::Hook);
  EXPECT_EQ(fake->site(1, Site::DownIn).steps.at(0).kind, K::R4);
  EXPECT_EQ(fake->site(1, Site::DownIn).where, QuantWhere::Hook);
  EXPECT_EQ(fake->site(m->spec.n_layers, Site::LmHeadIn).where, QuantWhere::None);  // lm_head stays fp
  EXPECT_EQ(fake->k_head_transform(), nullptr);
  OnlineCaps run;
  run.linears_quantize_inputs = run.down_linears_apply_r4 = run.cache_quantizes_kv = run.cache_applies_r3 = true;
  auto real = plan_online(r, m->spec, run);
  EXPECT_TRUE(real->site(0, Site::K).steps.empty());  // R3 moved into the cache write
  EXPECT_EQ(real->site(0, Site::K).where, QuantWhere::CacheWrite);
  EXPECT_NE(real->k_head_transform(), nullptr);
  EXPECT_TRUE(real->site(0, Site::DownIn).steps.empty());  // R4 moved into down_proj
  EXPECT_EQ(real->site(0, Site::DownIn).where, QuantWhere::LinearInput);
  EXPECT_EQ(real->site(0, Site::Q).steps.size(), 1u);  // Q is still rotated by the hook
  // the builder (the pipeline's) adds a site transform to one layer and site only
  OnlinePlanBuilder b(r, m->spec);
  SiteTransform t;
  t.n = m->spec.hidden;
  t.smooth.assign(m->spec.hidden, 2.0f);
  b.set_site_transform(1, Site::AttnIn, t);
  ASSERT_EQ(b.plan().site(1, Site::AttnIn).steps.size(), 1u);
  EXPECT_EQ(b.plan().site(1, Site::AttnIn).steps[0].kind, K::SiteTransform);
  EXPECT_TRUE(b.plan().site(0, Site::AttnIn).steps.empty());
  EXPECT_EQ(b.plan().site(1, Site::AttnIn).where, QuantWhere::None);  // transforms only while quantizing
  std::vector<float> x(3 * m->spec.hidden, 1.0f), y = x;
  b.on_activation(1, Site::AttnIn, x.data(), 3, m->spec.hidden);
  t.apply(y.data(), 3);
  EXPECT_EQ(x, y);
  EXPECT_THROW(b.set_site_transform(m->spec.n_layers, Site::AttnIn, t), Error);
}

TEST(Session, NewCacheIsQuantizedExactlyWhenThePlanLeavesKVToTheCache) {
  auto m = Model::open(test::tinyllama());
  Session fp(*m);
  EXPECT_FALSE(fp.quantized());
  EXPECT_EQ(fp.hooks(), nullptr);
  EXPECT_FALSE(fp.new_cache(1, 8).quantized());
  EXPECT_EQ(fp.new_quantized_cache(1, 8), nullptr);
  for (int kv : {4, 8, 16}) {
    Recipe r;
    r.set_bits(16, 16, kv, m->spec.head_dim);
    OnlineCaps cache;
    cache.cache_quantizes_kv = kv_cache_supported(r, m->spec);
    EXPECT_EQ(cache.cache_quantizes_kv, kv < 16);
    Session fake(*m, r), real(*m, r, cache);
    EXPECT_FALSE(fake.new_cache(1, 8).quantized()) << kv;  // K/V quantized in the hook instead
    KVCache c = real.new_cache(2, 8);
    EXPECT_EQ(c.quantized(), kv < 16) << kv;
    EXPECT_EQ(c.nseq, 2);
    if (kv < 16) {
      EXPECT_EQ(c.k_spec.bits, kv);
    }
    EXPECT_EQ(real.new_quantized_cache(1, 8) != nullptr, kv < 16) << kv;
  }
}

}  // namespace
}  // namespace kt
