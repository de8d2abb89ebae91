// Issue-5 methods: every transform keeps full-precision logits (quantization off), saved
// site transforms reload exactly, DuQuant's pieces are orthogonal / a permutation, zigzag
// spreads the top channels, CrossQuant with alpha = 1 equals per-token quantization.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "export/quantized_model.h"
#include "model_factory.h"
#include "quant/pipeline.h"
#include "quant/session.h"
#include "quant/validate_model.h"
#include "test_util.h"
#include "transform/duquant.h"

namespace kt {
namespace {

class MethodEquivalence : public ::testing::TestWithParam<std::string> {};

TEST_P(MethodEquivalence, KeepsFpLogitsAndReloads) {
  auto base = Model::open(test::tinyllama());
  auto m = Model::open(test::tinyllama());
  QuantizeOptions o;
  o.progress = false;
  o.recipe.set_bits(16, 16, 16, m->spec.head_dim);
  o.recipe.set_method(GetParam());
  o.calib_path = test::data() + "/text/calib.txt";
  o.nsamples = 4;
  o.seqlen = 128;
  o.recipe.dq_steps = 32;
  quantize_model(*m, o);
  std::vector<int32_t> toks;
  for (int i = 0; i < 40; i++) toks.push_back(1 + i * 97 % 8000);
  Session hooks(*m, o.recipe);
  auto want = forward(*base, toks.data(), 1, 40, nullptr, nullptr);
  auto got = forward(*m, toks.data(), 1, 40, nullptr, hooks.hooks());
  EXPECT_LT(test::max_rel_diff(got, want), 1e-4) << GetParam();
  // with quantization on, save + reload reproduces the in-memory model exactly
  auto q = Model::open(test::tinyllama());
  QuantizeOptions oq = o;
  oq.recipe = Recipe{};
  oq.recipe.set_bits(4, 4, 4, q->spec.head_dim);
  oq.recipe.set_method(GetParam());
  oq.recipe.dq_steps = 32;
  quantize_model(*q, oq);
  std::string out = test::temp_dir("meth") + "/q";
  save_quantized(*q, oq.recipe, out, false);
  Session back = open_session(out);
  ASSERT_TRUE(back.quantized());
  Session mem(*q, oq.recipe);
  EXPECT_EQ(forward(back.model(), toks.data(), 1, 40, nullptr, back.hooks()), forward(*q, toks.data(), 1, 40, nullptr, mem.hooks()));
}

INSTANTIATE_TEST_SUITE_P(All, MethodEquivalence,
                         ::testing::Values("smoothquant", "smoothrot", "smoothrot-all", "duquant", "crossquant"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(DuQuant, RotationIsOrthogonalPermutationIsAPermutation) {
  const int n = 256, rows = 300;
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  std::vector<float> x((size_t)rows * n);
  for (auto& v : x) v = nd(g);
  for (int r = 0; r < rows; r++) x[(size_t)r * n + 37] *= 50, x[(size_t)r * n + 200] *= 30;
  Tensor blk = greedy_block_rotation(x, rows, n, 128, 64);
  for (int i = 0; i < 128; i++)
    for (int j = 0; j < 128; j++) {
      double d = 0;
      for (int k = 0; k < 128; k++) d += (double)blk.data[i * 128 + k] * blk.data[j * 128 + k];
      ASSERT_NEAR(d, i == j, 1e-4);
    }
  // the rotation lowers the block's max |x|
  std::vector<float> y = x;
  apply_block_rotation(y.data(), rows, n, blk);
  float mx0 = 0, mx1 = 0;
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < 128; c++) mx0 = std::max(mx0, std::fabs(x[r * n + c])), mx1 = std::max(mx1, std::fabs(y[r * n + c]));
  EXPECT_LT(mx1, 0.5f * mx0);
  std::vector<Linear> ls(1);
  ls[0].w = Tensor({8, n});
  std::fill(ls[0].w.data.begin(), ls[0].w.data.end(), 0.1f);
  std::vector<double> am(n, 1.0);
  am[37] = 50;
  SiteTransform t = build_duquant(x, rows, n, am, {&ls[0]}, DuQuantOptions{0.6, 128, 32, true});
  t.validate("test");  // throws unless perm is a permutation and blocks divide n
  std::set<int> p(t.perm.begin(), t.perm.end());
  EXPECT_EQ((int)p.size(), n);
}

TEST(DuQuant, ZigzagPutsTopChannelsInDifferentBlocks) {
  const int n = 16, K = 4;
  std::vector<double> cm(n);
  for (int i = 0; i < n; i++) cm[i] = i;  // channel 15 largest
  auto perm = zigzag_permutation(cm, K);
  ASSERT_EQ(perm.size(), 16u);
  auto block_of = [&](int ch) {
    for (int j = 0; j < n; j++)
      if (perm[j] == ch) return j / (n / K);
    return -1;
  };
  std::set<int> top;
  for (int ch = 15; ch > 15 - K; ch--) top.insert(block_of(ch));
  EXPECT_EQ((int)top.size(), K);  // the 4 largest land in 4 different blocks
  // zigzag: the 5th largest goes back into the block of the 4th largest
  EXPECT_EQ(block_of(11), block_of(12));
  // block sums of channel maxima are balanced: 0+7+8+15 = 30 each
  for (int b = 0; b < K; b++) {
    double s = 0;
    for (int j = b * 4; j < b * 4 + 4; j++) s += cm[perm[j]];
    EXPECT_EQ(s, 30.0);
  }
}

TEST(CrossQuant, AlphaOneEqualsPerTokenQuantization) {
  std::mt19937 g(3);
  std::normal_distribution<float> nd;
  std::vector<float> x(6 * 40);
  for (auto& v : x) v = nd(g);
  std::vector<float> colmax(40, 0.0f);
  for (int r = 0; r < 6; r++)
    for (int c = 0; c < 40; c++) colmax[c] = std::max(colmax[c], std::fabs(x[r * 40 + c]));
  QuantSpec s;
  s.bits = 4;
  s.clip_ratio = 0.9f;
  auto a = x, b = x;
  crossquant_fake_quant_ref(a.data(), 6, 40, colmax.data(), 1.0, s);
  fake_quant_ref(b.data(), 6, 40, s);
  EXPECT_EQ(a, b);
  // alpha < 1 gives a smaller quantization kernel on data with a loud column
  for (int r = 0; r < 6; r++) x[r * 40 + 3] *= 40;
  for (int c = 0; c < 40; c++) colmax[c] = 0;
  for (int r = 0; r < 6; r++)
    for (int c = 0; c < 40; c++) colmax[c] = std::max(colmax[c], std::fabs(x[r * 40 + c]));
  s.clip_ratio = 1.0f;
  EXPECT_LT(crossquant_zero_share_ref(x.data(), 6, 40, colmax.data(), 0.5, s), zero_share_ref(x.data(), 6, 40, s));
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

// A quantized model as the input of another quantize run: its linears lose their recorded grid
// (the transforms move the weights off it), so a W16 rotation keeps the logits of the quantized
// weights run in fp32, and the result saves (before, saving failed: "weights are not on their
// recorded integer grid"; before that, it packed the stale grid silently).
TEST(Requantize, AQuantizedModelCanBeRotatedAndQuantizedAgain) {
  auto m = Model::open(test::tinyllama());
  m->truncate_layers(2);
  QuantizeOptions o4 = test::quantize_for_test(*m, "rtn", 4, 16, 16);
  const std::string dir = test::temp_dir("requant");
  save_quantized(*m, o4.recipe, dir + "/q4", false);
  std::vector<int32_t> toks;
  for (int i = 0; i < 32; i++) toks.push_back(1 + i * 131 % 8000);
  for (int wbits : {16, 3}) {
    auto in = open_model(dir + "/q4");
    const auto want = forward(*in, toks.data(), 1, 32, nullptr, nullptr);  // the int4 weights in fp32
    QuantizeOptions o = test::quantize_for_test(*in, "quarot", wbits, 16, 16);
    in->layer(0)->for_each_linear([&](LinearId, const Linear& l) {
      EXPECT_EQ(l.qbits, 0) << "no grid at 16 bits, and 3 bits has no packed type: none recorded";
      EXPECT_FALSE(l.packed);
    });
    Session s(*in, o.recipe);
    const auto got = forward(*in, toks.data(), 1, 32, nullptr, s.hooks());
    if (wbits == 16) {
      EXPECT_LT(test::max_rel_diff(got, want), 1e-4);
    }
    save_quantized(*in, o.recipe, dir + "/w" + std::to_string(wbits), false);
    Session back = open_session(dir + "/w" + std::to_string(wbits));
    EXPECT_EQ(forward(back.model(), toks.data(), 1, 32, nullptr, back.hooks()), got) << wbits << " bits";
  }
}

}  // namespace
}  // namespace kt
