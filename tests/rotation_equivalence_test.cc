// Exact identities: with quantization off, every combination of rotations leaves the
// full-precision logits unchanged; and a saved model + recipe reproduces the in-memory one.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "export/quantized_model.h"
#include "eval/generate.h"
#include "model_factory.h"
#include "quant/pipeline.h"
#include "quant/session.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

void check_all_combinations(const std::string& model_path, int ntok) {
  auto base = Model::open(model_path);
  std::vector<int32_t> toks;
  for (int i = 0; i < ntok; i++) toks.push_back(1 + (i * 7919) % (base->spec.vocab - 1));
  auto want = forward(*base, toks.data(), 1, ntok, nullptr, nullptr);
  for (int mask = 1; mask < 16; mask++) {
    auto m = Model::open(model_path);
    QuantizeOptions o;
    o.progress = false;
    o.recipe.method = "quarot";
    o.recipe.set_bits(16, 16, 16, m->spec.head_dim);
    o.recipe.r1 = mask & 1;
    o.recipe.r2 = mask & 2;
    o.recipe.r3 = mask & 4;
    o.recipe.r4 = mask & 8;
    o.recipe.seed = 11;
    quantize_model(*m, o);
    Session hooks(*m, o.recipe);
    auto got = forward(*m, toks.data(), 1, ntok, nullptr, hooks.hooks());
    EXPECT_LT(test::max_rel_diff(got, want), 1e-4) << model_path << " rotations mask " << mask;
  }
}

TEST(RotationEquivalence, TinyLlamaAllCombinations) { check_all_combinations(test::tinyllama(), 48); }

TEST(RotationEquivalence, RandomModelNonPowerOfTwoFfn) {
  test::RandomModelOptions o;
  o.ffn = 176;  // 4 * 44: Paley Hadamard
  check_all_combinations(test::make_random_model(o), 16);
  o.ffn = 172;  // no Hadamard construction: seeded random orthogonal fallback
  o.hidden = 96;  // 96 = 8 * 12
  o.heads = 3;
  o.kv_heads = 1;
  o.qwen2_bias = true;
  check_all_combinations(test::make_random_model(o), 16);
}

TEST(RotationEquivalence, Llama2cInterleavedRopeConvertsExactly) {
  std::string bin = test::data() + "/models/aidreams260K/aidreams260K.bin";
  auto m = Model::open(bin);
  QuantizeOptions o = test::quantize_for_test(*m, "quarot", 16, 16, 16);
  EXPECT_EQ(m->spec.rope_style, RopeStyle::RotateHalf);
  std::string out = test::temp_dir("l2c") + "/q";
  save_quantized(*m, o.recipe, out, false);
  Session back = open_session(out);  // an HF directory now, with tokenizer.bin beside it
  ASSERT_TRUE(back.quantized());
  GenOptions g;
  g.n_new = 40;
  g.stop_at_eos = false;
  auto ids = generate(back, {1}, g);
  EXPECT_EQ(ids, test::aidreams_golden_ids());
}

TEST(QuantizedModel, SaveLoadReproducesInMemoryModel) {
  test::RandomModelOptions ro;
  ro.ffn = 176;
  std::string src = test::make_random_model(ro);
  auto m = Model::open(src);
  QuantizeOptions o = test::quantize_for_test(*m, "quarot", 4, 4, 4);
  std::string out = test::temp_dir("save") + "/q";
  save_quantized(*m, o.recipe, out, false);
  EXPECT_THROW(save_quantized(*m, o.recipe, out, false), Error);  // refuses to overwrite
  Session back = open_session(out);
  ASSERT_TRUE(back.quantized());
  Session mem(*m, o.recipe);
  std::vector<int32_t> toks = {1, 50, 700, 3, 4095, 9, 10, 11};
  EXPECT_EQ(forward(back.model(), toks.data(), 1, 8, nullptr, back.hooks()), forward(*m, toks.data(), 1, 8, nullptr, mem.hooks()));
  // and quantization really happened: logits differ from the fp model
  auto fp = Model::open(src);
  EXPECT_GT(test::max_rel_diff(forward(*m, toks.data(), 1, 8, nullptr, mem.hooks()), forward(*fp, toks.data(), 1, 8, nullptr, nullptr)), 1e-3);
}

}  // namespace
}  // namespace kt
