// Readers and converters: fp16/bf16 conversion, safetensors round trip, sharded and bf16
// checkpoints load to the same model, config parsing of Qwen2/Mistral/llama3 rope.
#include <gtest/gtest.h>

#include <cmath>

#include "io/hf_config.h"
#include "eval/perplexity.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "model_factory.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

TEST(Convert, Fp16RoundTripsEveryFiniteHalf) {
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;  // inf/nan
    float f = f16_to_f32((uint16_t)h);
    EXPECT_EQ(f32_to_f16(f), (uint16_t)h) << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
}

TEST(Convert, Bf16RoundsToNearestEven) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f)), 1.0f);
  // 1 + 2^-8 is exactly halfway between bf16 neighbours 1 and 1+2^-7: ties to even (1.0).
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + std::ldexp(1.0f, -8))), 1.0f);
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
}

TEST(Safetensors, WriteReadRoundTrip) {
  std::string dir = test::temp_dir("st");
  Tensor a({2, 3}), b({5});
  for (int i = 0; i < 6; i++) a.data[i] = i * 0.5f - 1;
  for (int i = 0; i < 5; i++) b.data[i] = (float)i;
  write_safetensors(dir + "/x.safetensors", {{"a", &a}, {"b", &b}}, {{"format", "pt"}});
  SafetensorsFile f(dir + "/x.safetensors");
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f.load("a").data, a.data);
  EXPECT_EQ(f.load("b").shape, b.shape);
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

// The same random weights stored as one file, as 3 shards, and as bf16 give the same logits
// (bf16 within its rounding).
TEST(Safetensors, ShardedAndBf16CheckpointsLoad) {
  test::RandomModelOptions o;
  std::string one = test::make_random_model(o);
  o.shards = 3;
  std::string three = test::make_random_model(o);
  o.shards = 1;
  o.bf16 = true;
  std::string bf = test::make_random_model(o);
  std::vector<int32_t> toks = {1, 5, 9, 200, 3000, 17, 8000, 42};
  auto m1 = Model::open(one), m3 = Model::open(three), mb = Model::open(bf);
  auto l1 = forward(*m1, toks.data(), 1, 8, nullptr, nullptr);
  auto l3 = forward(*m3, toks.data(), 1, 8, nullptr, nullptr);
  auto lb = forward(*mb, toks.data(), 1, 8, nullptr, nullptr);
  EXPECT_EQ(l1, l3);
  double md = 0;
  for (size_t i = 0; i < l1.size(); i++) md = std::max(md, (double)std::fabs(l1[i] - lb[i]));
  EXPECT_LT(md, 0.05);
  EXPECT_GT(md, 0.0);  // bf16 really was stored and converted
}

TEST(Model, StreamingEqualsResident) {
  test::RandomModelOptions o;
  o.layers = 3;
  std::string dir = test::make_random_model(o);
  auto res = Model::open(dir, 1), str = Model::open(dir, 0);
  EXPECT_TRUE(res->resident());
  EXPECT_FALSE(str->resident());
  std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6};
  EXPECT_EQ(forward(*res, toks.data(), 2, 3, nullptr, nullptr), forward(*str, toks.data(), 2, 3, nullptr, nullptr));
}

TEST(Model, Qwen2BiasIsApplied) {
  test::RandomModelOptions o;
  o.qwen2_bias = true;
  auto m = Model::open(test::make_random_model(o));
  EXPECT_EQ(m->spec.arch, "qwen2");
  EXPECT_TRUE(m->spec.attn_qkv_bias);
  auto w = m->layer(0);
  ASSERT_FALSE(w->q.b.empty());
  // Removing the bias must change the output: the bias is really used.
  std::vector<int32_t> toks = {1, 7, 99, 1234};
  auto with = forward(*m, toks.data(), 1, 4, nullptr, nullptr);
  LayerWeights nb = *w;
  std::fill(nb.q.b.data.begin(), nb.q.b.data.end(), 0.0f);
  std::fill(nb.k.b.data.begin(), nb.k.b.data.end(), 0.0f);
  std::fill(nb.v.b.data.begin(), nb.v.b.data.end(), 0.0f);
  m->set_layer(0, nb);
  EXPECT_NE(with, forward(*m, toks.data(), 1, 4, nullptr, nullptr));
}

TEST(Config, RejectsUnsupportedRopeScalingAndArch) {
  std::string dir = test::temp_dir("cfg");
  write_file_atomic(dir + "/c.json",
                    R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,)"
                    R"("num_attention_heads":4,"vocab_size":10,"rope_scaling":{"type":"mrope","factor":4}})");
  try {
    read_hf_config(dir + "/c.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported rope_scaling type 'mrope'"), std::string::npos) << e.what();
  }
  write_file_atomic(dir + "/d.json", R"({"model_type":"gpt_neox","architectures":["GPTNeoXForCausalLM"]})");
  EXPECT_THROW(read_hf_config(dir + "/d.json"), Error);
  write_file_atomic(dir + "/e.json",
                    R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,)"
                    R"("num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"llama3","factor":8.0,)"
                    R"("low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}})");
  ModelSpec s = read_hf_config(dir + "/e.json");
  EXPECT_EQ(s.rope_scaling.type, "llama3");
  EXPECT_EQ(s.rope_scaling.factor, 8.0);
}

}  // namespace
}  // namespace kt
