// GGUF in and out: a model written by write_gguf and read back gives the HF model's logits
// (F32 exactly), F16/Q8_0 tensors are the reference conversions, llama.cpp's q/k row
// permutation round-trips, and online transforms are refused.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "export/gguf_writer.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/tokenizer.h"
#include "model/forward.h"
#include "model/model.h"
#include "model_factory.h"
#include "test_util.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {
namespace {

std::vector<float> logits_of(const Model& m, const std::vector<int32_t>& toks) {
  return forward(m, toks.data(), 1, (int)toks.size(), nullptr, nullptr);
}

TEST(Gguf, F32RoundTripGivesTheHfLogitsAndTokens) {
  auto hf = Model::open(test::tinyllama());
  std::string path = test::temp_dir("gguf") + "/m.gguf";
  write_gguf(*hf, path, GGUFOutType::F32, "test");
  auto gg = Model::open(path);
  EXPECT_EQ(gg->spec.hidden, hf->spec.hidden);
  EXPECT_EQ(gg->spec.n_kv_heads, hf->spec.n_kv_heads);
  EXPECT_EQ(gg->spec.tie_embeddings, hf->spec.tie_embeddings);
  EXPECT_DOUBLE_EQ(gg->spec.rope_theta, hf->spec.rope_theta);
  // The GGUF tokenizer (llama.cpp's SPM algorithm over the exported vocab) matches libsentencepiece.
  for (const char* text : {"The kernel module loads at boot.", "  apt-get install -y libfoo-dev\n\tdone", "héllo wörld 123"}) {
    EXPECT_EQ(gg->tokenizer->encode_for_model(text), hf->tokenizer->encode_for_model(text)) << text;
  }
  auto ids = hf->tokenizer->encode_for_model("Debian packages are built from source packages by the maintainers.");
  std::vector<int32_t> toks(ids.begin(), ids.end());
  auto a = logits_of(*hf, toks), b = logits_of(*gg, toks);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(test::max_rel_diff(a, b), 0.0) << "same fp32 weights, same code: identical logits";
}

TEST(Gguf, F16BF16AndQ8_0TensorsAreTheReferenceConversions) {
  auto hf = Model::open(test::tinyllama());
  std::string dir = test::temp_dir("gguf");
  write_gguf(*hf, dir + "/h.gguf", GGUFOutType::F16, "f16");
  write_gguf(*hf, dir + "/q.gguf", GGUFOutType::Q8_0, "q8");
  write_gguf(*hf, dir + "/b.gguf", GGUFOutType::BF16, "bf16");
  const std::string q = "model.layers.3.self_attn.q_proj.weight", k = "model.layers.3.self_attn.k_proj.weight",
                    d = "model.layers.3.mlp.down_proj.weight";
  auto hw = hf->layer(3);
  auto f16 = std::make_shared<const GGUFFile>(dir + "/h.gguf");
  GGUFSource s16(f16, gguf_model_spec(*f16));
  for (auto [name, ref] : {std::pair{q, &hw->q.w}, {k, &hw->k.w}, {d, &hw->down.w}}) {
    Tensor t = s16.load(name);
    ASSERT_EQ(t.shape, ref->shape) << name;
    for (size_t i = 0; i < t.data.size(); i++)
      ASSERT_EQ(t.data[i], f16_to_f32(f32_to_f16(ref->data[i]))) << name << " element " << i;
  }
  auto bf = std::make_shared<const GGUFFile>(dir + "/b.gguf");
  GGUFSource sbf(bf, gguf_model_spec(*bf));
  EXPECT_EQ(sbf.info(q).dtype, DType::BF16);
  for (auto [name, ref] : {std::pair{q, &hw->q.w}, {k, &hw->k.w}, {d, &hw->down.w}}) {
    Tensor t = sbf.load(name);
    for (size_t i = 0; i < t.data.size(); i++)
      ASSERT_EQ(t.data[i], bf16_to_f32(f32_to_bf16(ref->data[i]))) << name << " element " << i;
  }
  auto q8 = std::make_shared<const GGUFFile>(dir + "/q.gguf");
  GGUFSource s8(q8, gguf_model_spec(*q8));
  EXPECT_EQ(s8.info(q).dtype, DType::Q8_0);
  EXPECT_EQ(s8.info("model.norm.weight").dtype, DType::F32);
  for (auto [name, ref] : {std::pair{q, &hw->q.w}, {d, &hw->down.w}}) {
    // blocks lie within rows, so quantizing llama.cpp's permuted rows = permuting quantized rows
    std::vector<BlockQ8_0> blk(ref->data.size() / 32);
    quantize_row_q8_0_ref(ref->data.data(), blk.data(), ref->data.size());
    Tensor t = s8.load(name);
    for (size_t i = 0; i < t.data.size(); i++)
      ASSERT_EQ(t.data[i], f16_to_f32(blk[i / 32].d) * blk[i / 32].qs[i % 32]) << name << " element " << i;
  }
  // whole-model sanity: Q8_0 logits stay close to fp32
  auto m8 = Model::open(dir + "/q.gguf");
  std::vector<int32_t> toks = {1, 450, 846, 338, 263, 1243};
  auto a = logits_of(*hf, toks), b = logits_of(*m8, toks);
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); i++) err += (a[i] - b[i]) * (a[i] - b[i]), ref += a[i] * a[i];
  EXPECT_LT(std::sqrt(err / ref), 0.02);
}

TEST(Gguf, Qwen2WithBiasesRoundTrips) {
  test::RandomModelOptions o;
  o.qwen2_bias = true;
  o.hidden = 64, o.heads = 4, o.kv_heads = 2, o.ffn = 128, o.layers = 2;
  std::string dir = test::make_random_model(o);
  auto hf = Model::open(dir);
  std::string path = dir + "/m.gguf";
  write_gguf(*hf, path, GGUFOutType::F32, "qwen");
  GGUFFile f(path);
  EXPECT_EQ(f.get_string("general.architecture", ""), "qwen2");
  auto gg = Model::open(path);
  EXPECT_TRUE(gg->spec.attn_qkv_bias);
  std::vector<int32_t> toks = {1, 5, 77, 300, 9, 4000};
  EXPECT_EQ(test::max_rel_diff(logits_of(*hf, toks), logits_of(*gg, toks)), 0.0);
}

TEST(Gguf, ExportAfterFusedRotationsKeepsLogitsAndRefusesOnlineOnes) {
  std::string dir = test::temp_dir("ggq");
  // R1 + R2 fused into the weights, no online transforms, no quantization: an exact identity.
  auto r = test::run_cli("quantize -q --method quarot --no-r3 --no-r4 --w 16 --a 16 --kv 16 --out " + dir + "/rot");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("export-gguf -q --type f32 --model " + dir + "/rot --out " + dir + "/rot.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  auto hf = Model::open(test::tinyllama()), gg = Model::open(dir + "/rot.gguf");
  std::vector<int32_t> toks = {1, 450, 846, 338, 263, 1243, 310, 278};
  EXPECT_LT(test::max_rel_diff(logits_of(*hf, toks), logits_of(*gg, toks)), 1e-4);
  // QuaRot's R4 runs online before down_proj: not expressible in GGUF.
  r = test::run_cli("quantize -q --method quarot --w 16 --a 16 --kv 16 --out " + dir + "/r4");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("export-gguf --model " + dir + "/r4 --out " + dir + "/r4.gguf");
  test::expect_documented_error(r, "needs online transforms GGUF cannot express");
  EXPECT_FALSE(file_exists(dir + "/r4.gguf"));
}

// quantize's packed output (its default) exports as its grid values: the same GGUF, byte for
// byte, as the --fake output of the same recipe, whose fp32 weights are code x scale, the
// 8-bit head included.
TEST(Gguf, PackedModelExportsAsTheFakeQuantModel) {
  const std::string dir = test::temp_dir("ggp");
  const std::string q = "quantize -q --method quarot --no-r3 --no-r4 --lm-head-bits 8 --out " + dir;
  auto r = test::run_cli(q + "/packed");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli(q + "/fake --fake");
  ASSERT_EQ(r.code, 0) << r.err;
  auto whole = [](const std::string& f) { return read_file(f, size_t{1} << 30); };
  const std::string st = whole(dir + "/packed/model.safetensors");
  ASSERT_NE(st.find("\"model.layers.0.mlp.down_proj.qweight\""), std::string::npos) << "the layers are packed";
  ASSERT_NE(st.find("\"lm_head.qweight\""), std::string::npos) << "the head is packed";
  ASSERT_EQ(whole(dir + "/fake/model.safetensors").find(".qweight\""), std::string::npos) << "the --fake one is not";
  for (const char* v : {"packed", "fake"}) {
    r = test::run_cli(std::string("export-gguf -q --type f32 --name m --model ") + dir + "/" + v + " --out " + dir + "/" +
                      v + ".gguf");
    ASSERT_EQ(r.code, 0) << v << ": " << r.err;
  }
  const std::string a = whole(dir + "/packed.gguf"), b = whole(dir + "/fake.gguf");
  EXPECT_GT(a.size(), size_t{4} << 20);
  EXPECT_TRUE(a == b) << "packed and fake-quant GGUFs differ";
}

TEST(Gguf, QuantizeFromGgufCarriesItsTokenizer) {
  std::string dir = test::temp_dir("ggt");
  auto r = test::run_cli("export-gguf -q --out " + dir + "/m.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("quantize -q --method quarot --model " + dir + "/m.gguf --out " + dir + "/q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(file_exists(dir + "/q/tokenizer.gguf"));
  r = test::run_cli("run --model " + dir + "/q --prompt 'The package' -n 4");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("The package", 0), 0u) << r.out;
}

// A checkpoint with more embedding rows than tokens (a padded vocabulary) exports as
// llama.cpp's converter writes it: "[PAD<id>]" tokens of type UNUSED up to the row count, so
// llama.cpp's n_vocab matches the embedding; the model reads back with the same logits.
TEST(Gguf, PaddedVocabularyGetsPadTokens) {
  auto hf = Model::open(test::tinyllama());
  const int64_t v0 = hf->spec.vocab, pad = 8, d = hf->spec.hidden;
  hf->embed.data.resize((size_t)(v0 + pad) * d, 0.0f);
  hf->embed.shape[0] = v0 + pad;
  hf->spec.vocab = (int)(v0 + pad);
  std::string path = test::temp_dir("ggpad") + "/m.gguf";
  write_gguf(*hf, path, GGUFOutType::F32, "padded");
  GGUFFile f(path);
  const auto& toks = f.get("tokenizer.ggml.tokens").strs;
  const auto& types = f.get("tokenizer.ggml.token_type").ints;
  ASSERT_EQ((int64_t)toks.size(), v0 + pad);
  ASSERT_EQ((int64_t)types.size(), v0 + pad);
  EXPECT_EQ(toks[v0], "[PAD" + std::to_string(v0) + "]");
  EXPECT_EQ(toks[v0 + pad - 1], "[PAD" + std::to_string(v0 + pad - 1) + "]");
  EXPECT_EQ(types[v0], 5);
  EXPECT_EQ(f.get("tokenizer.ggml.scores").floats[v0], -1000.0);
  EXPECT_NE(types[v0 - 1], 5);
  auto gg = Model::open(path);
  EXPECT_EQ(gg->spec.vocab, v0 + pad);
  std::vector<int32_t> ids = {1, 450, 8000, 37};
  EXPECT_EQ(test::max_rel_diff(logits_of(*hf, ids), logits_of(*gg, ids)), 0.0);
  // fewer rows than tokens: refused, naming the file
  hf->spec.vocab = (int)(v0 - 1);
  hf->embed.shape[0] = v0 - 1;
  hf->embed.data.resize((size_t)(v0 - 1) * d);
  try {
    write_gguf(*hf, path + "2", GGUFOutType::F32, "short");
    ADD_FAILURE() << "a tokenizer larger than the embedding was exported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more than the model's " + std::to_string(v0 - 1) + " embedding rows"),
              std::string::npos) << e.what();
  }
}

TEST(Gguf, BadFilesAreRejectedWithTheirProblem) {
  auto hf = Model::open(test::tinyllama());
  std::string dir = test::temp_dir("ggb");
  write_gguf(*hf, dir + "/m.gguf", GGUFOutType::F16, "x");
  std::string bytes = read_file(dir + "/m.gguf", SIZE_MAX);
  write_file_atomic(dir + "/cut.gguf", bytes.substr(0, 200000));
  test::expect_documented_error(test::run_cli("eval -q --max-windows 1 --ctx 32 --model " + dir + "/cut.gguf"),
                                "cut.gguf: tensor 'token_embd.weight' data [0, +4194304) out of range (data section is");
  // A K-quant tensor (ggml type 12) is listed but cannot be loaded: say which and why.
  GGUFFile f(dir + "/m.gguf");
  size_t pos = bytes.find("blk.0.attn_q.weight");
  ASSERT_NE(pos, std::string::npos);
  size_t type_at = pos + std::strlen("blk.0.attn_q.weight") + 4 + 2 * 8;  // name, n_dims, 2 dims
  uint32_t q4k = 12;
  std::memcpy(&bytes[type_at], &q4k, 4);
  write_file_atomic(dir + "/q4k.gguf", bytes);
  test::expect_documented_error(test::run_cli("eval -q --max-windows 1 --ctx 32 --model " + dir + "/q4k.gguf"),
                                "tensor 'blk.0.attn_q.weight' has ggml type Q4_K, which kurtail does not read");
  // `info` still describes such a file from its metadata
  auto r = test::run_cli("info --json --model " + dir + "/q4k.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["dtypes"]["Q4_K"], 1);
  EXPECT_NE(j["can"].get<std::string>().find("metadata only"), std::string::npos);
}

}  // namespace
}  // namespace kt
