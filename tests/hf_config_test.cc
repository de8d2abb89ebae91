// config.json fields that change the math, in both layouts transformers writes: version 4
// (top-level rope_theta, rope_scaling) and version 5 (rope_parameters, layer_types). A field
// kurtail does not implement is refused with one line, never silently ignored.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>

#include "io/hf_config.h"
#include "model/forward.h"
#include "test_util.h"
#include "util/error.h"
#include "util/file.h"
#include "util/output.h"

namespace kt {
namespace {

using json = nlohmann::json;

json base_config(const std::string& arch = "llama") {
  return json{{"model_type", arch},           {"hidden_size", 64},        {"intermediate_size", 128},
              {"num_hidden_layers", 3},       {"num_attention_heads", 4}, {"num_key_value_heads", 2},
              {"vocab_size", 100},            {"max_position_embeddings", 8192}};
}

ModelSpec read(const json& j) {
  static int n = 0;
  std::string dir = test::temp_dir("hfcfg");
  std::string p = dir + "/c" + std::to_string(n++) + ".json";
  write_file_atomic(p, j.dump());
  return read_hf_config(p);
}

std::string read_error(const json& j) {
  try {
    read(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(HfConfig, Transformers5RopeParametersGiveTheSameSpecAsVersion4) {
  json v4 = base_config();
  v4["rope_theta"] = 500000.0;
  v4["rope_scaling"] = {{"rope_type", "llama3"},
                        {"factor", 32.0},
                        {"low_freq_factor", 1.0},
                        {"high_freq_factor", 4.0},
                        {"original_max_position_embeddings", 8192}};
  json v5 = base_config();
  v5["rope_parameters"] = v4["rope_scaling"];
  v5["rope_parameters"]["rope_theta"] = 500000.0;
  ModelSpec a = read(v4), b = read(v5);
  EXPECT_EQ(b.rope_theta, 500000.0) << "theta must come from rope_parameters, not the 10000 default";
  EXPECT_EQ(b.rope_scaling.type, "llama3");
  EXPECT_EQ(b.rope_scaling.factor, 32.0);
  EXPECT_EQ(rope_freqs(a, 64).inv_freq, rope_freqs(b, 64).inv_freq);

  json plain = base_config();
  plain["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  ModelSpec p = read(plain);
  EXPECT_EQ(p.rope_theta, 1e6);
  EXPECT_TRUE(p.rope_scaling.type.empty());
}

TEST(HfConfig, RopeFieldsKurtailDoesNotImplementAreRefused) {
  json j = base_config();
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"low_freq_factor", 1.0}};
  EXPECT_NE(read_error(j).find("rope_scaling field 'low_freq_factor' is not supported for rope type 'linear'"), std::string::npos)
      << read_error(j);
  j = base_config();
  j["rope_parameters"] = {{"full_attention", {{"rope_type", "default"}, {"rope_theta", 1e4}}}};
  EXPECT_NE(read_error(j).find("per layer type"), std::string::npos) << read_error(j);
  j = base_config();
  j["partial_rotary_factor"] = 0.5;
  EXPECT_NE(read_error(j).find("partial_rotary_factor"), std::string::npos) << read_error(j);
  j = base_config();
  j["rope_theta"] = 1e4;
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  EXPECT_NE(read_error(j).find("rope_theta differs"), std::string::npos) << read_error(j);
  j = base_config();
  j["rope_scaling"] = {{"rope_type", "dynamic"}};
  EXPECT_NE(read_error(j).find("needs factor"), std::string::npos) << read_error(j);
  j = base_config();
  j["rope_scaling"] = {{"rope_type", "longrope"}, {"short_factor", {1.0, 1.0}}, {"long_factor", {1.0, 1.0}}};
  EXPECT_NE(read_error(j).find("head_dim / 2 = 8 values"), std::string::npos) << read_error(j);
}

// Mixtral and Qwen2-MoE: the expert fields with their transformers defaults; Qwen2-MoE layouts
// with dense layers among the sparse ones are refused (kurtail holds one MLP kind per model).
TEST(HfConfig, MoeFieldsAndRefusals) {
  json j = base_config("mixtral");
  ModelSpec s = read(j);
  EXPECT_EQ(s.n_experts, 8);  // MixtralConfig defaults: 8 experts, top 2, renormalised
  EXPECT_EQ(s.top_k, 2);
  EXPECT_TRUE(s.norm_topk_prob);
  EXPECT_EQ(s.moe_ffn, 128);  // Mixtral's intermediate_size is the expert width
  EXPECT_EQ(s.shared_ffn, 0);
  EXPECT_EQ(s.down_widths(), std::vector<int>{128});
  j = base_config("qwen2_moe");
  j.update({{"num_experts", 6}, {"num_experts_per_tok", 2}, {"moe_intermediate_size", 48},
            {"shared_expert_intermediate_size", 96}, {"norm_topk_prob", true}, {"mlp_only_layers", json::array()}});
  s = read(j);
  EXPECT_EQ(s.n_experts, 6);
  EXPECT_EQ(s.top_k, 2);
  EXPECT_TRUE(s.norm_topk_prob);
  EXPECT_TRUE(s.attn_qkv_bias);
  EXPECT_EQ(s.down_widths(), (std::vector<int>{48, 96}));
  j["norm_topk_prob"] = false;
  EXPECT_FALSE(read(j).norm_topk_prob);
  j["num_experts_per_tok"] = 7;
  EXPECT_NE(read_error(j).find("num_experts_per_tok must be in 1..num_experts"), std::string::npos) << read_error(j);
  j["num_experts_per_tok"] = 2;
  j["decoder_sparse_step"] = 2;
  EXPECT_NE(read_error(j).find("decoder_sparse_step"), std::string::npos) << read_error(j);
  j["decoder_sparse_step"] = 1;
  j["mlp_only_layers"] = {0};
  EXPECT_NE(read_error(j).find("mlp_only_layers"), std::string::npos) << read_error(j);
}

TEST(HfConfig, Qwen2SlidesOnlyFromMaxWindowLayersOrAsLayerTypesSay) {
  json j = base_config("qwen2");
  j["use_sliding_window"] = true;
  j["sliding_window"] = 16;
  j["max_window_layers"] = 1;
  ModelSpec s = read(j);
  EXPECT_EQ(s.window(0), 0);
  EXPECT_EQ(s.window(1), 16);
  EXPECT_EQ(s.window(2), 16);
  j["use_sliding_window"] = false;  // Qwen2.5 checkpoints: sliding_window is set but unused
  s = read(j);
  for (int l = 0; l < 3; l++) EXPECT_EQ(s.window(l), 0);
  j["use_sliding_window"] = true;
  j["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};  // transformers 5
  s = read(j);
  EXPECT_EQ(s.window(0), 16);
  EXPECT_EQ(s.window(1), 0);
  EXPECT_EQ(s.window(2), 16);
  j["layer_types"] = {"sliding_attention", "chunked_attention", "full_attention"};
  EXPECT_NE(read_error(j).find("unsupported layer_types entry 'chunked_attention'"), std::string::npos);

  json m = base_config("mistral");
  m["sliding_window"] = 4096;
  s = read(m);
  for (int l = 0; l < 3; l++) EXPECT_EQ(s.window(l), 4096);
}

// Gemma 2: Gemma2Config's defaults (query_pre_attn_scalar 256, soft-caps 50 and 30, window
// 4096 on layers 0, 2, ...), null switching a soft-cap or the window off, layer_types (v5), the
// fields written back, and values kurtail does not implement refused.
TEST(HfConfig, Gemma2ScalarSoftcapsAndAlternatingWindow) {
  json j = base_config("gemma2");
  j["head_dim"] = 32;
  ModelSpec s = read(j);
  EXPECT_EQ(s.query_pre_attn_scalar, 256.0);
  EXPECT_FLOAT_EQ(s.attn_scale(), 1.0f / 16.0f);
  EXPECT_EQ(s.attn_softcap, 50.0f);
  EXPECT_EQ(s.final_softcap, 30.0f);
  EXPECT_EQ(s.norm_offset, 1.0f);
  EXPECT_EQ(s.embed_scale, 8.0f);
  EXPECT_EQ(s.act, Act::GeluTanh);
  EXPECT_TRUE(s.tie_embeddings);
  EXPECT_EQ(s.window(0), 4096);
  EXPECT_EQ(s.window(1), 0);
  EXPECT_EQ(s.window(2), 4096);
  j["query_pre_attn_scalar"] = 16;
  j["attn_logit_softcapping"] = nullptr;
  j["final_logit_softcapping"] = 20.0;
  j["sliding_window"] = 24;
  j["layer_types"] = {"full_attention", "sliding_attention", "sliding_attention"};
  s = read(j);
  EXPECT_FLOAT_EQ(s.attn_scale(), 0.25f);
  EXPECT_EQ(s.attn_softcap, 0.0f);
  EXPECT_EQ(s.final_softcap, 20.0f);
  EXPECT_EQ(s.window(0), 0);
  EXPECT_EQ(s.window(1), 24);
  EXPECT_EQ(s.window(2), 24);
  ModelSpec b = read(json::parse(spec_to_hf_config(s)));
  EXPECT_EQ(b.query_pre_attn_scalar, s.query_pre_attn_scalar);
  EXPECT_EQ(b.attn_softcap, s.attn_softcap);
  EXPECT_EQ(b.final_softcap, s.final_softcap);
  for (int l = 0; l < 3; l++) EXPECT_EQ(b.window(l), s.window(l));
  j["sliding_window"] = nullptr;
  for (int l = 0; l < 3; l++) EXPECT_EQ(read(j).window(l), 0);
  // not implemented: refused by name
  json bad = base_config("gemma2");
  bad["hidden_activation"] = "gelu";
  EXPECT_NE(read_error(bad).find("unsupported hidden_activation 'gelu'"), std::string::npos) << read_error(bad);
  bad = base_config("gemma2");
  bad["attn_logit_softcapping"] = -1;
  EXPECT_NE(read_error(bad).find("attn_logit_softcapping must be positive"), std::string::npos) << read_error(bad);
  bad = base_config("gemma2");
  bad["query_pre_attn_scalar"] = 0;
  EXPECT_NE(read_error(bad).find("query_pre_attn_scalar must be positive"), std::string::npos) << read_error(bad);
  bad = base_config("gemma2");
  bad["sliding_window"] = 24;
  bad["sliding_window_size"] = 4096;
  EXPECT_NE(read_error(bad).find("sliding_window (24) and sliding_window_size (4096) differ"), std::string::npos)
      << read_error(bad);
}

TEST(HfConfig, WrittenConfigReadsBackToTheSameMath) {
  json y = base_config();
  y["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 8.0}, {"original_max_position_embeddings", 1024}, {"beta_fast", 16}};
  json q = base_config("qwen2");
  q["use_sliding_window"] = true;
  q["sliding_window"] = 16;
  q["max_window_layers"] = 2;
  q["rope_scaling"] = {{"rope_type", "longrope"},
                       {"short_factor", std::vector<double>(8, 1.5)},
                       {"long_factor", std::vector<double>(8, 3.0)},
                       {"original_max_position_embeddings", 32}};
  for (const json& j : {y, q}) {
    ModelSpec a = read(j);
    ModelSpec b = read(json::parse(spec_to_hf_config(a)));
    for (int64_t len : {16, 64})
      EXPECT_EQ(rope_freqs(a, len).inv_freq, rope_freqs(b, len).inv_freq) << j.dump();
    EXPECT_EQ(rope_freqs(a, 64).attention_factor, rope_freqs(b, 64).attention_factor);
    for (int l = 0; l < 3; l++) EXPECT_EQ(a.window(l), b.window(l));
  }
}

// Phi-3 (configuration_phi3 / modeling_phi3): original_max_position_embeddings at the top level
// (default 4096), the longrope factor and so the attention factor from max_position_embeddings
// / original, no bias whatever attention_bias says, sliding_window on every layer.
TEST(HfConfig, Phi3FieldsAsTransformersReadsThem) {
  json j = base_config("phi3");
  j["max_position_embeddings"] = 1024;
  j["original_max_position_embeddings"] = 32;
  j["sliding_window"] = 2047;
  j["attention_bias"] = true;  // transformers' Phi-3 builds its linears without a bias anyway
  j["resid_pdrop"] = 0.1;      // dropout: training only
  j["rope_scaling"] = {{"type", "longrope"},
                       {"short_factor", std::vector<double>(8, 1.5)},
                       {"long_factor", std::vector<double>(8, 3.0)}};
  ModelSpec s = read(j);
  EXPECT_EQ(s.arch, "phi3");
  EXPECT_FALSE(s.attn_qkv_bias || s.attn_o_bias || s.mlp_bias);
  for (int l = 0; l < 3; l++) EXPECT_EQ(s.window(l), 2047) << "layer " << l;
  EXPECT_EQ(s.rope_scaling.type, "longrope");
  EXPECT_EQ(s.rope_scaling.original_max_position, 32);
  EXPECT_EQ(s.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(rope_freqs(s, 33).attention_factor, std::sqrt(2.0));
  auto plain = rope_freqs(read(base_config()), 64).inv_freq;
  EXPECT_DOUBLE_EQ(rope_freqs(s, 32).inv_freq[5], plain[5] / 1.5) << "32 positions: short factors";
  EXPECT_DOUBLE_EQ(rope_freqs(s, 33).inv_freq[5], plain[5] / 3.0) << "33 positions: long factors";

  // Without the key, Phi3Config's 4096
  json d = j;
  d.erase("original_max_position_embeddings");
  d["max_position_embeddings"] = 8192;
  EXPECT_EQ(read(d).rope_scaling.original_max_position, 4096);
  EXPECT_EQ(read(d).rope_scaling.factor, 2.0);

  // What transformers would read differently is refused
  json f = j;
  f["rope_scaling"]["factor"] = 8.0;
  EXPECT_NE(read_error(f).find("factor differs from max_position_embeddings / original_max_position_embeddings"),
            std::string::npos) << read_error(f);
  json p = j;
  p["partial_rotary_factor"] = 0.75;  // Phi-4-mini
  EXPECT_NE(read_error(p).find("partial_rotary_factor"), std::string::npos) << read_error(p);
  json o = j;
  o["rope_scaling"]["original_max_position_embeddings"] = 64;
  EXPECT_NE(read_error(o).find("original_max_position_embeddings differs"), std::string::npos) << read_error(o);

  // Written back in Phi3Config's form: rope_scaling holds exactly type, short_factor, long_factor
  const json w = json::parse(spec_to_hf_config(s));
  EXPECT_EQ(w["architectures"][0], "Phi3ForCausalLM");
  EXPECT_EQ(w["original_max_position_embeddings"], 32);
  EXPECT_EQ(w["rope_scaling"].size(), 3u) << w["rope_scaling"].dump();
  EXPECT_EQ(w["rope_scaling"]["type"], "longrope");
  ModelSpec b = read(w);
  for (int64_t len : {16, 64}) EXPECT_EQ(rope_freqs(s, len).inv_freq, rope_freqs(b, len).inv_freq);
  EXPECT_EQ(rope_freqs(s, 64).attention_factor, rope_freqs(b, 64).attention_factor);
  for (int l = 0; l < 3; l++) EXPECT_EQ(b.window(l), 2047);
}

TEST(Rope, ScalingsFollowTransformersFormulas) {
  ModelSpec s = read(base_config());  // head_dim 16, theta 10000
  auto plain = rope_freqs(s, 64).inv_freq;
  s.rope_scaling.type = "linear";
  s.rope_scaling.factor = 4;
  for (int i = 0; i < 8; i++) EXPECT_DOUBLE_EQ(rope_freqs(s, 64).inv_freq[i], plain[i] / 4);
  // dynamic NTK: the plain frequencies up to max_position_embeddings, a larger base beyond
  s.rope_scaling.type = "dynamic";
  s.rope_scaling.factor = 2;
  EXPECT_EQ(rope_freqs(s, s.max_pos).inv_freq, plain);
  const double base = 10000.0 * std::pow(2.0 * (2 * s.max_pos) / s.max_pos - 1, 16.0 / 14.0);
  EXPECT_NEAR(rope_freqs(s, 2 * s.max_pos).inv_freq[1], 1.0 / std::pow(base, 2.0 / 16), 1e-15);
  // longrope: short factors up to original_max_position, long beyond; sqrt(1 + ln f / ln orig)
  s.rope_scaling = RopeScaling{};
  s.rope_scaling.type = "longrope";
  s.rope_scaling.original_max_position = 32;
  s.rope_scaling.factor = 32;
  s.rope_scaling.short_factor.assign(8, 2.0);
  s.rope_scaling.long_factor.assign(8, 5.0);
  EXPECT_DOUBLE_EQ(rope_freqs(s, 32).inv_freq[3], plain[3] / 2);
  EXPECT_DOUBLE_EQ(rope_freqs(s, 33).inv_freq[3], plain[3] / 5);
  EXPECT_DOUBLE_EQ(rope_freqs(s, 33).attention_factor, std::sqrt(1 + std::log(32.0) / std::log(32.0)));
}

// Sliding window: query i sees keys i-w < j <= i. Checked against a direct double computation.
TEST(Attention, SlidingWindowMasksKeysOutsideIt) {
  ModelSpec s = read(base_config());
  const int T = 9, w = 3, qd = s.q_dim(), kvd = s.kv_dim(), hd = s.head_dim;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> q(T * qd), k(T * kvd), v(T * kvd), out(T * qd);
  for (auto* a : {&q, &k, &v})
    for (auto& e : *a) e = nd(rng);
  attend(s, q.data(), KVView{k.data(), v.data(), T}, 1, T, 0, T, w, out.data());
  for (int i = 0; i < T; i++)
    for (int h = 0; h < s.n_heads; h++) {
      const int kh = h / (s.n_heads / s.n_kv_heads);
      std::vector<double> p;
      double mx = -1e300, sum = 0;
      for (int j = std::max(0, i - w + 1); j <= i; j++) {
        double d = 0;
        for (int c = 0; c < hd; c++) d += (double)q[i * qd + h * hd + c] * k[j * kvd + kh * hd + c];
        p.push_back(d / std::sqrt((double)hd));
        mx = std::max(mx, p.back());
      }
      for (double& e : p) sum += (e = std::exp(e - mx));
      for (int c = 0; c < hd; c++) {
        double want = 0;
        int idx = 0;
        for (int j = std::max(0, i - w + 1); j <= i; j++) want += p[idx++] / sum * v[j * kvd + kh * hd + c];
        EXPECT_NEAR(out[i * qd + h * hd + c], want, 1e-5) << "query " << i << " head " << h;
      }
    }
}

}  // namespace
}  // namespace kt
