// End to end: a quantized model run on the integer kernels (every kernel this CPU supports)
// gives the fake-quant perplexity of the same recipe within 0.5%; packing is exact.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "export/quantized_model.h"
#include "eval/perplexity.h"
#include "quant/pipeline.h"
#include "kernels/packed.h"
#include "runtime/real_model.h"
#include "quant/validate_model.h"
#include "runtime/runner.h"
#include "io/safetensors.h"
#include "model_factory.h"
#include "util/error.h"
#include "test_util.h"

namespace kt {
namespace {

void check(int wbits, int abits, int wgroup) {
  auto m = Model::open(test::tinyllama());
  QuantizeOptions o;
  o.progress = false;
  o.recipe.method = "quarot";
  o.recipe.set_bits(wbits, abits, 4, m->spec.head_dim);
  if (wgroup) {
    o.recipe.w.gran = Granularity::PerGroup;
    o.recipe.w.group = wgroup;
  }
  o.recipe.r1 = o.recipe.r2 = o.recipe.r3 = o.recipe.r4 = true;
  quantize_model(*m, o);
  std::string out = test::temp_dir("real") + "/q";
  save_quantized(*m, o.recipe, out, false);

  auto toks = tokenize_file(*m->tokenizer, test::data() + "/text/wikitext2_raw_test.joined.txt");
  Windows w = make_windows(toks, 256, 6, "wikitext");
  EvalOptions eo;
  eo.progress = false;
  Session fake = open_session(out);
  ASSERT_TRUE(fake.quantized());
  const Recipe r = *fake.recipe();
  double ppl_fake = perplexity(fake, w, eo).ppl;
  for (Kernel k : {Kernel::Scalar, Kernel::Avx2, Kernel::Vnni, Kernel::Amx}) {
    if (!kernel_supported(k)) continue;
    set_active_kernel(k);
    std::shared_ptr<Model> real = Model::open(out);
    PackReport pr = pack_model_for_kernels(*real, r, true);
    EXPECT_EQ(pr.packed, 7 * real->spec.n_layers);
    EXPECT_LT(pr.packed_bytes * 3, pr.fp32_bytes);
    auto plan = plan_online(r, real->spec, kernel_caps(*real, pr, /*quantized_kv=*/false));
    EXPECT_TRUE(fuse_online_rotations(*real, *plan));  // R4 runs inside down_proj's quantizer
    double ppl_real = perplexity(Session(real, r, plan), w, eo).ppl;
    EXPECT_NEAR(ppl_real, ppl_fake, 0.005 * ppl_fake) << kernel_name(k) << " W" << wbits << "A" << abits;
  }
  set_active_kernel(Kernel::Scalar);
}

TEST(RealKernels, W4A4MatchesFakeQuant) { check(4, 4, 0); }
TEST(RealKernels, W4A8GroupedMatchesFakeQuant) { check(4, 8, 64); }
TEST(RealKernels, W8A8MatchesFakeQuant) { check(8, 8, 0); }

TEST(RealKernels, RefusesUnsupportedRecipes) {
  Recipe r;
  r.set_bits(4, 4, 4, 32);
  std::string why;
  EXPECT_TRUE(recipe_runs_on_kernels(r, &why));
  r.a.symmetric = false;
  EXPECT_FALSE(recipe_runs_on_kernels(r, &why));
  EXPECT_NE(why.find("asymmetric"), std::string::npos);
  r.set_bits(4, 16, 16, 32);
  EXPECT_FALSE(recipe_runs_on_kernels(r, &why));
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

TEST(KVCacheInt4, DecodeEqualsFakeQuantPrefillAndIsSmall) {
  auto m = Model::open(test::tinyllama());
  Recipe r;
  r.set_bits(16, 16, 4, m->spec.head_dim);  // only K/V quantized
  Session fake(*m, r);
  const int T = 20, V = m->spec.vocab;
  std::vector<int32_t> toks;
  for (int i = 0; i < T; i++) toks.push_back(1 + i * 211 % 8000);
  auto want = forward(*m, toks.data(), 1, T, nullptr, fake.hooks());
  OnlineCaps kv;
  kv.cache_quantizes_kv = true;
  Session real(*m, r, kv);
  KVCache cache = real.new_cache(1, T);
  EXPECT_TRUE(cache.quantized());
  forward(*m, toks.data(), 1, 8, &cache, real.hooks());  // prefill 8, then decode one by one
  for (int t = 8; t < T; t++) {
    auto step = forward(*m, &toks[t], 1, 1, &cache, real.hooks());
    double num = 0, den = 0;
    for (int j = 0; j < V; j++) {
      num = std::max(num, (double)std::fabs(step[j] - want[(size_t)t * V + j]));
      den = std::max(den, (double)std::fabs(want[(size_t)t * V + j]));
    }
    EXPECT_LT(num / den, 1e-5) << "position " << t;
  }
  KVCache fp(m->spec, 1, T);
  // int4 codes (kv_dim/2 bytes) + scale and zero per head vs 4 bytes per value
  EXPECT_LT(cache.bytes() * 4, fp.bytes());
  // and the cache really quantizes: without the fake K/V quantizers the logits differ
  auto plain = forward(*m, toks.data(), 1, T, nullptr, nullptr);
  double diff = 0;
  for (size_t i = 0; i < plain.size(); i++) diff = std::max(diff, (double)std::fabs(plain[i] - want[i]));
  EXPECT_GT(diff, 1e-3);
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

// Fused online rotations give the same logits, bit for bit, as the hook applying them first:
// R4 inside the down_proj activation quantizer (ffn 176 = 16 * 11: FWHT plus a Paley block) and
// R3's K half inside the int4 K/V cache write, with a cache and (R3 then applied by
// decoder_layer) without one.
TEST(RealKernels, FusedRotationsEqualHookRotationsBitForBit) {
  test::RandomModelOptions ro;
  ro.ffn = 176;
  std::string src = test::make_random_model(ro);
  auto m = Model::open(src);
  QuantizeOptions o = test::quantize_for_test(*m, "quarot", 4, 4, 4);
  ASSERT_TRUE(o.recipe.r3 && o.recipe.r4);
  std::string dir = test::temp_dir("fuse_rot");
  save_quantized(*m, o.recipe, dir + "/q", false, true);
  std::vector<int32_t> toks = {1, 2, 300, 4000, 5, 6, 7, 8, 9, 10, 11, 12, 13};
  const int n = (int)toks.size();
  for (Kernel k : {Kernel::Scalar, Kernel::Avx2, Kernel::Vnni, Kernel::Amx}) {
    if (!kernel_supported(k)) continue;
    set_active_kernel(k);
    RealModel fused = load_real(dir + "/q");
    ASSERT_TRUE(fused.session.plan()->r4_in_down_linears()) << kernel_name(k);
    ASSERT_TRUE(fused.session.plan()->r3_in_kv_cache()) << kernel_name(k);
    ASSERT_TRUE(fused.model().layer(0)->down.act_pre);
    ASSERT_TRUE(fused.session.quantizes_kv_cache());
    // the same packed model and int4 cache, with R3 and R4 left in the hook
    std::optional<Recipe> r;
    std::shared_ptr<Model> hm = open_model(dir + "/q", -1, "", &r);
    ASSERT_TRUE(r.has_value());
    PackReport pr = pack_model_for_kernels(*hm, *r, true);
    ASSERT_EQ(pr.packed, 7 * hm->spec.n_layers);
    OnlineCaps caps;
    caps.linears_quantize_inputs = caps.cache_quantizes_kv = true;
    Session hooked(hm, *r, caps);
    ASSERT_FALSE(hooked.plan()->r4_in_down_linears() || hooked.plan()->r3_in_kv_cache());
    ASSERT_FALSE(hooked.model().layer(0)->down.act_pre);
    KVCache ca = fused.session.new_cache(1, n), cb = hooked.new_cache(1, n);
    auto a = forward(fused.model(), toks.data(), 1, n, &ca, fused.session.hooks());
    auto b = forward(hooked.model(), toks.data(), 1, n, &cb, hooked.hooks());
    EXPECT_EQ(a, b) << kernel_name(k);
    EXPECT_EQ(ca.kq, cb.kq) << "same int4 K codes in the cache, " << kernel_name(k);
    EXPECT_EQ(forward(fused.model(), toks.data(), 1, n, nullptr, fused.session.hooks()),
              forward(hooked.model(), toks.data(), 1, n, nullptr, hooked.hooks()))
        << "no cache: decoder_layer applies the deferred R3, " << kernel_name(k);
    // without R4 at all the logits differ: the fused rotation is really applied (this plan
    // leaves R4 to the down_proj linears, which were not given it)
    caps.down_linears_apply_r4 = true;
    Session no_r4(hm, *r, caps);
    ASSERT_TRUE(no_r4.plan()->r4_in_down_linears());
    KVCache cc = no_r4.new_cache(1, n);
    EXPECT_NE(a, forward(no_r4.model(), toks.data(), 1, n, &cc, no_r4.hooks())) << kernel_name(k);
  }
  set_active_kernel(Kernel::Scalar);
}

TEST(PackedFormat, SaveLoadPackedEqualsFakeQuantFileAndValidates) {
  test::RandomModelOptions ro;
  ro.ffn = 176;
  std::string src = test::make_random_model(ro);
  auto m = Model::open(src);
  QuantizeOptions o = test::quantize_for_test(*m, "quarot", 4, 8, 8);
  std::string dir = test::temp_dir("packed");
  save_quantized(*m, o.recipe, dir + "/fq", false, false);
  save_quantized(*m, o.recipe, dir + "/pk", false, true);
  std::vector<int32_t> toks = {1, 2, 300, 4000, 5, 6, 7, 8};
  auto a = load_real(dir + "/fq"), b = load_real(dir + "/pk");
  EXPECT_GT(a.pack.packed, 0);
  EXPECT_EQ(a.pack.packed, b.pack.packed);
  EXPECT_EQ(forward(a.model(), toks.data(), 1, 8, nullptr, a.session.hooks()),
            forward(b.model(), toks.data(), 1, 8, nullptr, b.session.hooks()));
  // the packed file holds int4 weights, not fp32
  EXPECT_LT(read_file(dir + "/pk/model.safetensors", SIZE_MAX).size(), read_file(dir + "/fq/model.safetensors", SIZE_MAX).size());
  // a truncated .qweight is refused with the tensor's name
  {
    SafetensorsFile f(dir + "/pk/model.safetensors");
    EXPECT_EQ(f.info("model.layers.0.mlp.down_proj.qweight").dtype, DType::U8);
  }
  std::string bytes = read_file(dir + "/pk/model.safetensors", SIZE_MAX);
  size_t at = bytes.find("\"model.layers.0.self_attn.q_proj.qweight\"");
  ASSERT_NE(at, std::string::npos);
  // claim one byte fewer in data_offsets' end and in the shape -> the size check must fire
  auto shrink = [&](size_t from, const std::string& field, char stop) {
    size_t p0 = bytes.find(field, from) + field.size(), p1 = bytes.find(stop, p0);
    std::string v = std::to_string(std::stoll(bytes.substr(p0, p1 - p0)) - 1);
    v.resize(p1 - p0, ' ');
    bytes.replace(p0, p1 - p0, v);
    return p1;
  };
  size_t comma = bytes.find(',', bytes.find("data_offsets\":[", at));
  shrink(comma, ",", ']');
  shrink(at, "\"shape\":[", ']');
  write_file_atomic(dir + "/pk/model.safetensors", bytes);
  try {
    Model::open(dir + "/pk");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj.qweight' has"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

TEST(PackedFormat, Fp16GroupScalesAreStoredAsF16AndRunTheSame) {
  std::string dir = test::temp_dir("f16s");
  auto r = test::run_cli("quantize -q --method quarot --w-group 64 --w-scale f16 --packed --out " + dir + "/q");
  ASSERT_EQ(r.code, 0) << r.err;
  SafetensorsFile f(dir + "/q/model.safetensors");
  const TensorInfo& si = f.info("model.layers.0.mlp.down_proj.qscale");
  EXPECT_EQ(si.dtype, DType::F16);
  EXPECT_EQ(si.shape, (std::vector<int64_t>{256, 704 / 64}));
  // the fake-quant weights were made with these exact (fp16) scales: real == fake
  const std::string ev = "eval -q --json --max-windows 2 --ctx 256 --model " + dir + "/q --kernels ";
  auto real = test::run_cli(ev + "real"), fake = test::run_cli(ev + "fake");
  ASSERT_EQ(real.code, 0) << real.err;
  ASSERT_EQ(fake.code, 0) << fake.err;
  double pr = nlohmann::json::parse(real.out)["perplexity"], pf = nlohmann::json::parse(fake.out)["perplexity"];
  EXPECT_NEAR(pr / pf, 1.0, 0.005);
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// Quantizes a random model W4A4KV4 with a `bits`-bit head into dir/fq (fake quant) and dir/pk
// (packed), checks the packed head's bytes and that the kernels give the fake-quant head's
// logits, and runs the whole model on the kernels. Returns dir.
std::string check_packed_head(int bits, QType want_type) {
  const WTypeTraits& tt = wtype_traits(want_type);
  test::RandomModelOptions ro;
  ro.ffn = 176;
  const std::string src = test::make_random_model(ro);
  auto m = Model::open(src);
  QuantizeOptions o;
  o.progress = false;
  o.recipe.set_method("quarot");
  o.recipe.set_bits(4, 4, 4, m->spec.head_dim);
  o.recipe.quant_lm_head = true;
  o.recipe.lm_head_bits = bits;
  quantize_model(*m, o);
  EXPECT_FALSE(m->lm_head.qscale.empty());
  EXPECT_EQ(m->lm_head.qbits, bits);
  const std::string dir = test::temp_dir("lmhead" + std::to_string(bits));
  save_quantized(*m, o.recipe, dir + "/fq", false, false);
  save_quantized(*m, o.recipe, dir + "/pk", false, true);
  {
    SafetensorsFile f(dir + "/pk/model.safetensors");
    EXPECT_EQ(f.info("lm_head.qweight").dtype, DType::U8);
    EXPECT_EQ(f.info("lm_head.qweight").shape,
              (std::vector<int64_t>{(int64_t)ro.vocab / 16 * (ro.hidden / 8) * (int64_t)tt.step_bytes}));
    EXPECT_EQ(f.info("lm_head.qscale").shape, (std::vector<int64_t>{ro.vocab, 1}));
    EXPECT_FALSE(f.has("lm_head.weight"));
  }
  // The head alone on the same input rows (through the whole W4A4 model, one 4-bit code flipped
  // by float rounding would move the logits more than the head's own error): the fake-quant
  // session's hook quantizes the head's input, the real one leaves it to the packed linear.
  const int rows = 5, d = ro.hidden;
  std::vector<float> x0((size_t)rows * d);
  for (size_t i = 0; i < x0.size(); i++) x0[i] = std::sin(0.37 * (double)i) * (i % 17 == 0 ? 9.0 : 1.0);
  Session fake = open_session(dir + "/fq");
  EXPECT_EQ(fake.plan()->site(m->spec.n_layers, Site::LmHeadIn).quant.bits, bits);
  std::vector<float> x = x0, want((size_t)rows * ro.vocab);
  final_logits(fake.model(), x.data(), rows, want.data(), fake.hooks());
  for (const char* which : {"/fq", "/pk"}) {
    RealModel real = load_real(dir + which);
    if (!real.model().lm_head.packed) {
      ADD_FAILURE() << which << ": the head is not packed";
      return dir;
    }
    EXPECT_EQ(real.model().lm_head.packed->type, want_type);
    EXPECT_EQ(real.model().lm_head.act_bits, bits);
    EXPECT_EQ(real.session.plan()->site(m->spec.n_layers, Site::LmHeadIn).where, QuantWhere::LinearInput);
    std::vector<float> got(want.size());
    x = x0;
    final_logits(real.model(), x.data(), rows, got.data(), real.session.hooks());
    float amax = 0, dmax = 0;
    for (size_t i = 0; i < got.size(); i++) {
      amax = std::max(amax, std::fabs(want[i]));
      dmax = std::max(dmax, std::fabs(got[i] - want[i]));
    }
    EXPECT_LT(dmax, 1e-5f * amax) << which;
    // and the whole model runs: the 4-bit layers and the `bits`-bit head on the kernels
    std::vector<int32_t> toks = {1, 2, 300, 4000, 5, 6, 7, 8};
    const std::vector<float> logits = forward(real.model(), toks.data(), 1, 8, nullptr, real.session.hooks());
    EXPECT_EQ(std::count_if(logits.begin(), logits.end(), [](float v) { return !std::isfinite(v); }), 0) << which;
  }
  return dir;
}

// --lm-head-bits 8: lm_head gets its own 8-bit weight and input quantizers, is saved with its
// scales (packed as Q8 by --packed) and runs the W8A8 kernels; the kernels give the fake-quant
// logits (integer vs fp32 accumulation of the same codes), the 4-bit layers are unchanged, and
// the recipe's lm_head_bits is checked against the file.
TEST(RealKernels, PackedLmHeadRunsW8A8AndMatchesFakeQuant) {
  const std::string dir = check_packed_head(8, QType::Q8);
  // The head's bits must be the recipe's: lm_head_bits 4 against 8-bit scales is refused, as are
  // scales the recipe does not use and lm_head_bits without quant_lm_head.
  const std::string rj = read_file(dir + "/fq/recipe.json");
  auto refused = [&](const std::string& recipe, const std::string& msg) {
    write_file_atomic(dir + "/fq/recipe.json", recipe);
    try {
      (void)open_session(dir + "/fq");
      ADD_FAILURE() << "expected an error containing " << msg;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
    }
  };
  refused(replace_once(rj, "\"lm_head_bits\": 8", "\"lm_head_bits\": 4"), "lm_head.qbits' is 8");
  refused(replace_once(replace_once(rj, "\"lm_head_bits\": 8", "\"lm_head_bits\": 0"), "\"quant_lm_head\": true",
                       "\"quant_lm_head\": false"),
          "lm_head.qscale' is not used");
  refused(replace_once(rj, "\"quant_lm_head\": true", "\"quant_lm_head\": false"), "'lm_head_bits' is 8 but 'quant_lm_head' is false");
  refused(replace_once(rj, "\"lm_head_bits\": 8", "\"lm_head_bits\": 9"), "'lm_head_bits' is 9");
}

// --lm-head-bits 6: the head packs as Q6 (0.75 bytes a weight, against llama.cpp's Q6_K output
// matrix at 0.82) and runs W6A6 on the kernels with the fake-quant head's logits.
TEST(RealKernels, PackedLmHeadRunsW6A6AndMatchesFakeQuant) { check_packed_head(6, QType::Q6); }

}  // namespace
}  // namespace kt

namespace kt {
namespace {

// The flag: --lm-head-bits 8 implies --quant-lm-head and packs the head as Q8 with 8-bit scales.
TEST(PackedFormat, LmHeadBitsFlagWritesAQ8Head) {
  const std::string dir = test::temp_dir("lmflag");
  auto r = test::run_cli("quantize -q --method rtn --lm-head-bits 8 --packed --out " + dir + "/q");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(read_file(dir + "/q/recipe.json"));
  EXPECT_EQ(j["lm_head_bits"], 8);
  EXPECT_EQ(j["quant_lm_head"], true);
  SafetensorsFile f(dir + "/q/model.safetensors");
  EXPECT_EQ(f.info("lm_head.qweight").dtype, DType::U8);
  EXPECT_EQ(f.info("model.layers.0.mlp.down_proj.qscale").shape[1], 1);
  Tensor bits = to_f32(f.info("lm_head.qbits"));
  EXPECT_EQ(bits.data.at(0), 8.0f);
  EXPECT_NE(test::run_cli("quantize -q --method rtn --lm-head-bits 9 --out " + dir + "/bad").code, 0);
}

}  // namespace
}  // namespace kt
