// compressed-tensors export (issue #18): the packing rule against hand-computed words, the block
// Sylvester R4, and on the 8M proxy: exporting a quantized model and reading it back gives the
// same integers, scales and perplexity; what cannot be expressed or is corrupt fails in one line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/compressed_tensors.h"
#include "io/safetensors.h"
#include "kernels/packed.h"
#include "model/model.h"
#include "quant/validate_model.h"
#include "test_util.h"
#include "transform/rotation.h"
#include "util/error.h"
#include "util/file.h"
#include "util/output.h"

namespace kt {
namespace {

// pack_to_int32's rule (compressed-tensors pack_quantized.py): v + 2^(bits-1), LSB first.
// 4 bits, a row of 9: codes -8 -7 -1 0 1 2 7 3 | 5 -> nibbles 0 1 7 8 9 10 15 11 | 13:
// word 0 = 0xBFA98710 (nibble 0 in bits 0..3), word 1 = 0x0000000D (zero padding above).
TEST(CtPack, BitLayoutMatchesTheHandComputedWords) {
  const int8_t q4[9] = {-8, -7, -1, 0, 1, 2, 7, 3, 5};
  const std::vector<int32_t> p4 = ct_pack_int32(q4, 1, 9, 4);
  ASSERT_EQ(p4.size(), 2u);
  EXPECT_EQ((uint32_t)p4[0], 0xBFA98710u);
  EXPECT_EQ((uint32_t)p4[1], 0x0000000Du);
  // 8 bits: -128 -1 0 127 | 5 -> bytes 0x00 0x7F 0x80 0xFF | 0x85
  const int8_t q8[5] = {-128, -1, 0, 127, 5};
  const std::vector<int32_t> p8 = ct_pack_int32(q8, 1, 5, 8);
  ASSERT_EQ(p8.size(), 2u);
  EXPECT_EQ((uint32_t)p8[0], 0xFF807F00u);
  EXPECT_EQ((uint32_t)p8[1], 0x00000085u);
  // rows are packed independently: a second row starts a new word
  const int8_t two[4] = {1, 2, 3, 4};
  const std::vector<int32_t> pr = ct_pack_int32(two, 2, 2, 4);
  ASSERT_EQ(pr.size(), 2u);
  EXPECT_EQ((uint32_t)pr[0], 0xA9u);
  EXPECT_EQ((uint32_t)pr[1], 0xCBu);
}

TEST(CtPack, UnpackReturnsEveryCode) {
  for (int bits : {4, 8}) {
    const int lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
    const int rows = 3, cols = 37;  // not a multiple of 32/bits: padding in the last word
    std::vector<int8_t> q(rows * cols), back(rows * cols);
    for (int i = 0; i < rows * cols; i++) q[i] = (int8_t)(lo + (i * 7) % (hi - lo + 1));
    const std::vector<int32_t> p = ct_pack_int32(q.data(), rows, cols, bits);
    EXPECT_EQ((int64_t)p.size(), rows * ct_packed_cols(cols, bits));
    ct_unpack_int32(p.data(), rows, cols, bits, back.data());
    EXPECT_EQ(back, q) << bits;
  }
}

// Block R4: orthogonal, zero off the diagonal blocks, each block H_b / sqrt(b) with Sylvester's
// H[i][j] = (-1)^popcount(i & j) (compressed-tensors deterministic_hadamard_matrix).
TEST(BlockHadamard, IsOrthogonalBlockDiagonalSylvester) {
  const int n = 192, b = 64;
  const Rotation r = Rotation::block_hadamard(n, b);
  EXPECT_EQ(r.block(), b);
  const Tensor q = r.matrix();
  const float inv = 1.0f / std::sqrt((float)b);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      const float v = q.data[(size_t)i * n + j];
      const float want = i / b != j / b ? 0.0f : ((__builtin_popcount((i % b) & (j % b)) & 1) ? -inv : inv);
      ASSERT_NEAR(v, want, 1e-6f) << i << "," << j;
    }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double d = 0;
      for (int k = 0; k < n; k++) d += (double)q.data[(size_t)i * n + k] * q.data[(size_t)j * n + k];
      ASSERT_NEAR(d, i == j ? 1.0 : 0.0, 1e-5) << i << "," << j;
    }
  // the inverse undoes it
  std::vector<float> x(n);
  for (int i = 0; i < n; i++) x[i] = std::sin(0.3f * i);
  std::vector<float> y = x;
  r.apply(y.data(), 1);
  r.apply_inverse(y.data(), 1);
  EXPECT_LT(test::max_rel_diff(y, x), 1e-6);
  EXPECT_THROW(Rotation::block_hadamard(704, 128), Error);  // 128 does not divide 704
  EXPECT_THROW(Rotation::block_hadamard(96, 48), Error);    // no power of two
}

std::string cli_ok(const std::string& args) {
  test::CmdResult r = test::run_cli(args);
  EXPECT_EQ(r.code, 0) << args << "\n" << r.err;
  return r.err;
}

// One quantized proxy directory per recipe, exported once per suite run.
struct Dirs {
  std::string q, ct;
};
Dirs make(const std::string& tag, const std::string& qargs, const std::string& xargs) {
  const std::string d = test::temp_dir("ct_" + tag);
  Dirs r{d + "/q", d + "/ct"};
  cli_ok("quantize --model " + test::tinyllama() + " --out " + r.q + " -q " + qargs);
  cli_ok("export --format compressed-tensors --model " + r.q + " --out " + r.ct + " -q " + xargs);
  return r;
}

// Unpacking the export gives back exactly the integer weights and the scales kurtail quantized
// (fp32 scales with --dtype float32; fp16 scales are exact in float16).
TEST(CompressedTensorsExport, UnpackGivesTheQuantizedIntegersAndScales) {
  struct Case {
    std::string tag, qargs, xargs;
  };
  for (const Case& c : {Case{"chan", "--method quarot --no-r3 --a 4 --kv 16 --fake", "--dtype float32"},
                        Case{"group", "--method quarot --no-r3 --a 16 --kv 16 --w-group 64 --w-scale f16 --r4-block 64",
                             "--dtype float16"}}) {
    const Dirs d = make(c.tag, c.qargs, c.xargs);
    auto orig = open_model(d.q);
    CtModel ct = read_compressed_tensors(d.ct);
    int linears = 0;
    for (int l = 0; l < orig->spec.n_layers; l++) {
      auto lw = orig->layer(l);
      lw->for_each_tensor(orig->spec, [&](const TensorRow& row, int expert, TensorRole role, const Tensor&) {
        if (row.is_norm() || role != TensorRole::Weight) return;
        const Linear& li = lw->linear(row.field, expert);
        const std::string n = hf_name(row, l, nullptr, expert);
        const Tensor w = ct.tensors->load(n + ".weight"), s = ct.tensors->load(n + ".qscale");
        ASSERT_EQ(s.shape, li.qscale.shape) << n;
        EXPECT_EQ(s.data, li.qscale.data) << n;
        // the integers: w / scale of both sides (the original may hold them packed)
        std::vector<float> want = li.packed ? dequantize_packed(*li.packed) : li.w.data;
        ASSERT_EQ(w.data.size(), want.size()) << n;
        EXPECT_EQ(w.data, want) << n;
        linears++;
      });
    }
    EXPECT_EQ(linears, 7 * orig->spec.n_layers);
    EXPECT_EQ(ct.quant.w_bits, 4);
    EXPECT_EQ(ct.quant.w_group, c.tag == "group" ? 64 : 0);
    EXPECT_EQ(ct.quant.a_bits, c.tag == "group" ? 16 : 4);
    EXPECT_EQ(ct.quant.r4_block, c.tag == "group" ? 64 : 704);
  }
}

std::string mean_nll(const std::string& model) {
  test::CmdResult r = test::run_cli("eval --model " + model + " --max-windows 2 --ctx 128 --json -q");
  EXPECT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_object() && j.contains("mean_nll") ? j["mean_nll"].dump() : "missing: " + r.out;
}

// kurtail eval on the exported directory (read as a model) gives bit-identical perplexity: the
// same fp32 weights q * scale, the same R4 rebuilt from transform_config, the same per-token
// activation quantizer (clip 1, as the format has no clip). Full (dense Paley) and block R4,
// integer kernels (auto) and fake quantization.
TEST(CompressedTensorsExport, EvalOnTheExportEqualsTheOriginalExactly) {
  for (const std::string r4 : {"", "--r4-block 64"}) {
    const Dirs d = make(r4.empty() ? "full" : "block", "--method quarot --no-r3 --a 4 --kv 16 --a-clip 1 " + r4,
                        "--dtype float32");
    const std::string a = mean_nll(d.q), b = mean_nll(d.ct);
    EXPECT_EQ(a, b) << r4;
    EXPECT_EQ(a.rfind("missing", 0), std::string::npos);
    test::CmdResult f = test::run_cli("eval --model " + d.ct + " --kernels fake --max-windows 1 --ctx 64 --json -q");
    test::CmdResult g = test::run_cli("eval --model " + d.q + " --kernels fake --max-windows 1 --ctx 64 --json -q");
    EXPECT_EQ(nlohmann::json::parse(f.out, nullptr, false)["mean_nll"], nlohmann::json::parse(g.out, nullptr, false)["mean_nll"]);
  }
}

TEST(CompressedTensorsExport, R3IsRefusedUnlessDroppedAndSaysWhatIsLeftOut) {
  const std::string d = test::temp_dir("ct_r3");
  cli_ok("quantize --model " + test::tinyllama() + " --out " + d + "/q -q --method quarot --kv 16");
  test::expect_documented_error(test::run_cli("export --model " + d + "/q --out " + d + "/ct"),
                                "compressed-tensors cannot express R3");
  EXPECT_FALSE(file_exists(d + "/ct"));
  const std::string err = cli_ok("export --model " + d + "/q --out " + d + "/ct --drop-r3");
  EXPECT_NE(err.find("R3 (online Q/K Hadamard) dropped"), std::string::npos) << err;
  EXPECT_NE(err.find("activation clip ratio 0.9 not carried"), std::string::npos) << err;
  const std::string info = read_file(d + "/ct/kurtail_export.json");
  EXPECT_NE(info.find("R3 (online Q/K Hadamard) dropped"), std::string::npos);
  // --force replaces this exporter's own output, never another directory
  cli_ok("export --model " + d + "/q --out " + d + "/ct --drop-r3 --force -q");
  test::CmdResult r = test::run_cli("export --model " + d + "/q --out " + d + "/q --drop-r3 --force -q");
  EXPECT_NE(r.code, 0);
  EXPECT_TRUE(file_exists(d + "/q/recipe.json"));
}

// Copies DIR/model.safetensors with one tensor changed by `edit` (shape and bytes).
void rewrite(const std::string& dir, const std::string& name, const std::function<void(RawTensor&)>& edit) {
  std::vector<RawTensor> ts;
  {
    SafetensorsFile f(dir + "/model.safetensors");
    for (const std::string& n : f.names()) {
      const TensorInfo& ti = f.info(n);
      ts.push_back({n, ti.dtype, ti.shape, std::string((const char*)ti.data, ti.nbytes)});
      if (n == name) edit(ts.back());
    }
  }
  write_safetensors_raw(dir + "/model.safetensors", ts);
}

TEST(CompressedTensorsExport, CorruptTensorsFailInOneLine) {
  const Dirs d = make("bad", "--method quarot --no-r3 --kv 16 --r4-block 64", "");
  const std::string p = "model.layers.0.self_attn.q_proj";
  const std::string dir = test::temp_dir("ct_bad_copy");
  auto fresh = [&](const std::string& tag) {
    const std::string c = dir + "/" + tag;
    std::filesystem::copy(d.ct, c);
    return c;
  };
  {  // short weight_packed: one column of words missing
    const std::string c = fresh("short");
    rewrite(c, p + ".weight_packed", [](RawTensor& t) {
      const int64_t rows = t.shape[0], cols = t.shape[1];
      std::string b;
      for (int64_t r = 0; r < rows; r++) b += t.bytes.substr((size_t)(r * cols * 4), (size_t)((cols - 1) * 4));
      t.shape[1] = cols - 1;
      t.bytes = b;
    });
    test::expect_documented_error(test::run_cli("eval --model " + c + " --max-windows 1"),
                                  "model.layers.0.self_attn.q_proj.weight_packed' is I32 [256, 31]; expected I32 [256, 32]");
  }
  {  // weight_shape disagreeing with config.json
    const std::string c = fresh("shape");
    rewrite(c, p + ".weight_shape", [](RawTensor& t) {
      const int64_t v[2] = {256, 264};
      std::memcpy(t.bytes.data(), v, 16);
    });
    test::expect_documented_error(test::run_cli("eval --model " + c + " --max-windows 1"),
                                  "weight_shape' says [256, 264] but config.json gives [256, 256]");
  }
  {  // the R4 matrix is not Sylvester's
    const std::string c = fresh("r4");
    rewrite("" + c, "model.layers.3.mlp.down_proj.R4_input.weight", [](RawTensor& t) {
      const uint16_t minus_one = 0xBC00;  // F16 -1
      std::memcpy(t.bytes.data(), &minus_one, 2);
    });
    test::expect_documented_error(test::run_cli("eval --model " + c + " --max-windows 1"),
                                  "is not the Sylvester Hadamard matrix");
  }
  {  // a scale of zero
    const std::string c = fresh("scale");
    rewrite(c, p + ".weight_scale", [](RawTensor& t) { std::memset(t.bytes.data(), 0, 2); });
    test::expect_documented_error(test::run_cli("eval --model " + c + " --max-windows 1"),
                                  "has a scale that is not finite and > 0");
  }
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

double ppl_of(const std::string& model) {
  test::CmdResult r = test::run_cli("eval --model " + model + " --max-windows 2 --ctx 128 --json -q");
  EXPECT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  return j.is_object() && j.contains("perplexity") ? j["perplexity"].get<double>() : -1;
}

// The block R4 fused into down_proj and the one the online plan applies are the same matrix:
// without quantization the rotated model computes the FP model's function (to fp32 rounding).
// recipe.json records the block, and a block that does not fit the model is refused on load.
TEST(BlockR4, FusedAndOnlineAgreeAndTheRecipeRecordsIt) {
  const std::string d = test::temp_dir("blockr4");
  cli_ok("quantize --model " + test::tinyllama() + " --out " + d + "/q -q --method quarot --w 16 --a 16 --kv 16 "
         "--no-r3 --r4-block 32");
  const double fp = ppl_of(test::tinyllama()), rot = ppl_of(d + "/q");
  EXPECT_NEAR(rot / fp, 1.0, 1e-4) << fp << " " << rot;
  nlohmann::json j = nlohmann::json::parse(read_file(d + "/q/recipe.json"));
  EXPECT_EQ(j["r4"]["block"], 32);
  j["r4"]["block"] = 48;
  write_file_atomic(d + "/q/recipe.json", j.dump(2));
  test::expect_documented_error(test::run_cli("eval --model " + d + "/q --max-windows 1"),
                                "'r4.block' is 48; must be a power of two dividing the down_proj input width 704");
  test::expect_documented_error(
      test::run_cli("quantize --model " + test::tinyllama() + " --out " + d + "/x -q --r4-block 48"),
      "R4 block size 48 must be a power of two dividing 704");
}

}  // namespace
}  // namespace kt

namespace kt {
namespace {

// Families on the archs checkpoints: Phi-3 stores qkv_proj / gate_up_proj fused (codes and
// scales concatenated along out), Qwen2 has q/k/v biases, Gemma stores norms as multiplier - 1,
// Mixtral has routers (kept fp) and per-expert linears. Export and read back: the same perplexity,
// bit for bit.
TEST(CompressedTensorsExport, FamiliesRoundTripExactly) {
  for (const std::string a : {"phi3", "qwen2.5", "gemma", "mixtral"}) {
    const std::string d = test::temp_dir("ct_arch");
    cli_ok("quantize --model " + test::data() + "/models/archs/" + a + " --out " + d + "/q -q --method quarot --no-r3 "
           "--kv 16 --a-clip 1");
    cli_ok("export --model " + d + "/q --out " + d + "/ct -q --dtype float32");
    const std::string x = mean_nll(d + "/q"), y = mean_nll(d + "/ct");
    EXPECT_EQ(x, y) << a;
    EXPECT_EQ(x.rfind("missing", 0), std::string::npos) << a;
  }
}

}  // namespace
}  // namespace kt
