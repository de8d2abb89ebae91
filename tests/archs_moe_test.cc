// Mixture-of-experts families (Mixtral, Qwen2-MoE) beyond the golden match in
// archs_golden_test.cc: the routing rules against the reference's named mis-readings, each
// expert seeing exactly the tokens routed to it, the rotation methods at 16 bits keeping the FP
// logits (R1 through the router and every expert, R4 per expert width), W4A4KV4 on the integer
// kernels with the int4 cache, save + reload under the family's own tensor names, GPTQ per expert
// (and RTN for an expert no calibration token reaches), and the methods not built for MoE refused.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "eval/diagnostics.h"
#include "eval/perplexity.h"
#include "export/gguf_writer.h"
#include "export/quantized_model.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/text.h"
#include "model/forward.h"
#include "quant/pipeline.h"
#include "quant/session.h"
#include "runtime/runner.h"
#include "test_util.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {
namespace {

using json = nlohmann::json;

std::string arch_dir(const std::string& name) { return test::data() + "/models/archs/" + name; }

double golden_misreading(const std::string& name, const std::string& what) {
  const json g = json::parse(read_file(arch_dir(name) + "/golden.json", SIZE_MAX));
  return g["mis_readings"][what]["perplexity"].get<double>();
}

// kurtail eval's protocol on the folder's text (ctx 64, every window).
double text_perplexity(const Session& s, const std::string& name) {
  auto toks = tokenize_file(*s.model().tokenizer, arch_dir(name) + "/text.txt");
  EvalOptions eo;
  eo.progress = false;
  return perplexity(s, make_windows(toks, 64, 0, "text"), eo).ppl;
}

// The options these tests quantize with: the recipe's bits and method, calibrated on the
// folder's own text (4 windows of 64), KurTail shortened to 5 steps.
QuantizeOptions arch_options(const Model& m, const std::string& name, const char* method, int w, int a, int kv) {
  QuantizeOptions o;
  o.progress = false;
  o.recipe.set_bits(w, a, kv, m.spec.head_dim);
  o.recipe.set_method(method);
  o.calib_path = arch_dir(name) + "/text.txt";
  o.nsamples = 4;
  o.seqlen = 64;
  o.recipe.kurtail.iters = 5;
  return o;
}

std::vector<int32_t> first_window(const Model& m, const std::string& name) {
  auto toks = tokenize_file(*m.tokenizer, arch_dir(name) + "/text.txt");
  return {toks.begin(), toks.begin() + 64};
}

// The routing rules are what the perplexity match rests on: reading them the wrong way gives
// exactly the reference's perplexity for that mistake (Mixtral's top-1 instead of top-2;
// Qwen2-MoE's weights renormalised although norm_topk_prob is false).
TEST(MoeRouting, ReadingTheRuleWrongGivesTheReferencesNamedPerplexity) {
  struct Case {
    const char* family;
    const char* misreading;
    void (*misread)(ModelSpec&);
  };
  const Case cases[] = {{"mixtral", "top-1", [](ModelSpec& s) { s.top_k = 1; }},
                        {"qwen2-moe", "norm-topk", [](ModelSpec& s) { s.norm_topk_prob = true; }}};
  for (const Case& c : cases) {
    auto m = Model::open(arch_dir(c.family));
    c.misread(m->spec);
    const double ppl = text_perplexity(Session(*m), c.family), want = golden_misreading(c.family, c.misreading);
    EXPECT_LT(std::fabs(ppl / want - 1), 1e-4) << c.family << " " << c.misreading << ": " << ppl << " vs " << want;
  }
}

// Each expert's linears see exactly the tokens routed to it: top_k rows per token over the
// routed experts, every row for the shared expert, at both its inputs.
TEST(MoeRouting, EachExpertSeesTheTokensRoutedToIt) {
  struct Count : Hooks {
    std::map<std::pair<int, Site>, int64_t> rows;
    int64_t down_calls_rows = 0;
    void on_activation(int layer, Site site, float*, int64_t r, int64_t) override {
      if (layer == 0 && site == Site::DownIn) down_calls_rows += r;
    }
    void on_expert_input(int layer, int e, Site site, const float*, int64_t r, int64_t) override {
      if (layer == 0) rows[{e, site}] += r;
    }
  };
  for (const char* family : {"mixtral", "qwen2-moe"}) {
    auto m = Model::open(arch_dir(family));
    const ModelSpec& s = m->spec;
    const auto win = first_window(*m, family);
    Count c;
    forward(*m, win.data(), 1, 64, nullptr, &c);
    int64_t routed = 0;
    int used = 0;
    for (int e = 0; e < s.n_experts; e++) {
      EXPECT_EQ((c.rows[{e, Site::MlpIn}]), (c.rows[{e, Site::DownIn}])) << family << " expert " << e;
      routed += c.rows[{e, Site::MlpIn}];
      used += c.rows[{e, Site::MlpIn}] > 0;
    }
    EXPECT_EQ(routed, 64 * s.top_k) << family;
    EXPECT_GT(used, s.top_k) << family << ": the router spreads tokens over more than top_k experts";
    const int64_t shared = s.shared_ffn > 0 ? 64 : 0;
    EXPECT_EQ((c.rows[{s.n_experts, Site::MlpIn}]), shared) << family;
    EXPECT_EQ(c.down_calls_rows, routed + shared) << family;
  }
}

// `kurtail analyze` measures each expert's down_proj input on the tokens routed to it (the
// experts' widths can differ from the shared expert's, so there is no one down_in site).
TEST(MoeDiagnostics, EachExpertsDownInputIsMeasuredOnItsRoutedTokens) {
  auto m = Model::open(arch_dir("qwen2-moe"));
  const ModelSpec& s = m->spec;
  auto toks = tokenize_file(*m->tokenizer, arch_dir("qwen2-moe") + "/text.txt");
  Windows w = make_windows(toks, 64, 2, "text");
  QuantSpec zs;
  zs.bits = 4;
  const auto d = collect_diagnostics(Session(*m), w, zs, false);
  for (int l = 0; l < s.n_layers; l++) {
    ASSERT_EQ((int)d[l].expert_down.size(), s.n_experts + 1);
    EXPECT_FALSE(d[l].site[(int)Site::DownIn].seen);
    EXPECT_TRUE(d[l].site[(int)Site::MlpIn].seen);
    int64_t routed = 0;
    for (int e = 0; e < s.n_experts; e++) {
      EXPECT_EQ(d[l].expert_down[e].cols, s.moe_ffn);
      routed += d[l].expert_down[e].rows;
    }
    EXPECT_EQ(routed, (int64_t)w.n() * 64 * s.top_k);
    EXPECT_EQ(d[l].expert_down[s.n_experts].rows, (int64_t)w.n() * 64);
    EXPECT_EQ(d[l].expert_down[s.n_experts].cols, s.shared_ffn);
    EXPECT_EQ(d[l].expert_down[s.n_experts].linear, "mlp.shared_expert.down_proj");
  }
}

class MoeMethods : public ::testing::TestWithParam<std::string> {};

// R1 fused into the router, the shared-expert gate and every expert; R2/R3; R4 fused into each
// expert's down_proj at its own width (Qwen2-MoE: 48 for the experts, 176 for the shared one).
// At 16 bits nothing is quantized, so the logits stay the FP logits.
TEST_P(MoeMethods, RotationMethodsAtSixteenBitsKeepTheFpLogits) {
  const std::string dir = arch_dir(GetParam());
  auto base = Model::open(dir);
  const auto win = first_window(*base, GetParam());
  const auto want = forward(*base, win.data(), 1, 64, nullptr, nullptr);
  for (const char* method : {"rtn", "quarot", "kurtail"}) {
    auto m = Model::open(dir);
    QuantizeOptions o = arch_options(*m, GetParam(), method, 16, 16, 16);
    quantize_model(*m, o);
    Session sess(*m, o.recipe);
    EXPECT_LT(test::max_rel_diff(forward(*m, win.data(), 1, 64, nullptr, sess.hooks()), want), 1e-4)
        << GetParam() << ", " << method;
  }
}

// W4A4KV4 QuaRot and KurTail (GPTQ weights for KurTail): saved packed under the family's own
// tensor names, reloaded, and run on the integer kernels with the int4 K/V cache; the packed
// reload gives the in-memory model's perplexity (fake quantization vs integer kernels: close,
// not bit-equal) and the fake-quant reload its logits exactly.
TEST_P(MoeMethods, W4A4KV4RunsOnTheIntegerKernelsAndReloads) {
  const std::string dir = arch_dir(GetParam());
  for (const char* method : {"quarot", "kurtail"}) {
    auto q = Model::open(dir);
    QuantizeOptions o = arch_options(*q, GetParam(), method, 4, 4, 4);
    if (std::string(method) == "kurtail") o.recipe.weight_algo = "gptq";
    quantize_model(*q, o);
    const std::string out = test::temp_dir("moeq");
    save_quantized(*q, o.recipe, out + "/fq", false);
    save_quantized(*q, o.recipe, out + "/pk", false, true);
    SafetensorsDir st(out + "/pk");
    EXPECT_TRUE(st.has(GetParam() == "mixtral" ? "model.layers.1.block_sparse_moe.experts.3.w2.qweight"
                                               : "model.layers.1.mlp.experts.7.down_proj.qweight"));
    EXPECT_TRUE(st.has(GetParam() == "mixtral" ? "model.layers.1.block_sparse_moe.gate.weight"
                                               : "model.layers.1.mlp.shared_expert_gate.weight"))
        << "the routing linears stay in full precision";

    Session mem(*q, o.recipe);
    const auto win = first_window(*q, GetParam());
    Session back = open_session(out + "/fq");
    EXPECT_EQ(forward(back.model(), win.data(), 1, 64, nullptr, back.hooks()),
              forward(*q, win.data(), 1, 64, nullptr, mem.hooks()))
        << GetParam() << " " << method;

    RealModel real = load_real(out + "/pk");
    const int per_layer = 4 + 3 * q->spec.n_experts + (q->spec.shared_ffn > 0 ? 3 : 0);
    EXPECT_EQ(real.pack.packed, per_layer * q->spec.n_layers) << "every expert's linears run packed";
    ASSERT_TRUE(real.session.quantizes_kv_cache());
    ASSERT_TRUE(real.session.plan()->r4_in_down_linears()) << "R4 fused into every expert's down_proj input";
    const double ppl_real = text_perplexity(real.session, GetParam()), ppl_fake = text_perplexity(mem, GetParam());
    ASSERT_TRUE(std::isfinite(ppl_real));
    EXPECT_LT(std::fabs(ppl_real / ppl_fake - 1), 0.05) << GetParam() << " " << method << ": " << ppl_real << " vs " << ppl_fake;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, MoeMethods, ::testing::Values("mixtral", "qwen2-moe"),
                         [](const auto& info) { return info.param == "mixtral" ? std::string("mixtral") : std::string("qwen2_moe"); });

// GPTQ gives each expert the Hessian of the tokens routed to it. With one calibration window of
// 8 tokens some of Qwen2-MoE's 8 experts (top 4) can receive none: they are quantized by RTN and
// counted; the model stays finite. With more calibration every expert is reached.
TEST(MoeGptq, ExpertsWithoutCalibrationTokensFallBackToRtn) {
  const std::string dir = arch_dir("qwen2-moe");
  for (int nsamples : {1, 8}) {
    auto m = Model::open(dir);
    QuantizeOptions o;
    o.progress = false;
    o.recipe.set_bits(4, 16, 16, m->spec.head_dim);
    o.recipe.set_method("quarot");
    o.recipe.weight_algo = "gptq";
    o.calib_path = dir + "/text.txt";
    o.nsamples = nsamples;
    o.seqlen = nsamples == 1 ? 2 : 64;
    QuantizeReport rep = quantize_model(*m, o);
    if (nsamples == 1) EXPECT_GT(rep.experts_without_calibration, 0);
    else EXPECT_EQ(rep.experts_without_calibration, 0);
    Session s(*m, o.recipe);
    EXPECT_TRUE(std::isfinite(text_perplexity(s, "qwen2-moe")));
  }
}

TEST(MoeRefusals, MethodsWithPerSiteStatisticsAreRefusedByName) {
  for (const char* method : {"smoothquant", "duquant", "crossquant", "smoothrot-all"}) {
    auto m = Model::open(arch_dir("mixtral"));
    QuantizeOptions o;
    o.progress = false;
    o.recipe.set_bits(4, 4, 4, m->spec.head_dim);
    o.recipe.set_method(method);
    o.calib_path = arch_dir("mixtral") + "/text.txt";
    try {
      quantize_model(*m, o);
      ADD_FAILURE() << method << " ran on an MoE model";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not supported on mixture-of-experts models"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(method), std::string::npos) << e.what();
    }
  }
}

// The same refusal from the command line: one documented line, nothing written.
TEST(MoeRefusals, QuantizeCliRefusesSmoothQuantOnMixtral) {
  const std::string out = test::temp_dir("moecli") + "/q";
  const std::string d = arch_dir("mixtral");
  auto r = test::run_cli("quantize -q --model " + d + " --method smoothquant --calib " + d + "/text.txt --nsamples 2 --seqlen 64 --out " + out);
  test::expect_documented_error(r, "method smoothquant is not supported on mixture-of-experts models yet");
  EXPECT_FALSE(file_exists(out));
}

// GGUF as llama.cpp writes these families: Mixtral as "llama" with expert_count, Qwen2-MoE as
// "qwen2moe" with its expert widths; each expert kind stacked into one ffn_*_exps tensor
// (ggml dims in, out, n_expert), the router ffn_gate_inp, Qwen2-MoE's shared expert *_shexp and
// its 1-D gate. Read back, it is the same model: the golden perplexity.
TEST(MoeGguf, ExportAsLlamaCppStacksExpertsAndReadsBackToTheGolden) {
  for (const std::string family : {"mixtral", "qwen2-moe"}) {
    auto hf = Model::open(arch_dir(family));
    const ModelSpec& s = hf->spec;
    const std::string path = test::temp_dir("moegguf") + "/m.gguf";
    write_gguf(*hf, path, GGUFOutType::F32, family);
    {
      GGUFFile f(path);
      const std::string a = family == "mixtral" ? "llama" : "qwen2moe";
      EXPECT_EQ(f.get_string("general.architecture", ""), a);
      EXPECT_EQ(f.get_int(a + ".expert_count", -1), s.n_experts);
      EXPECT_EQ(f.get_int(a + ".expert_used_count", -1), s.top_k);
      std::map<std::string, std::vector<uint64_t>> dims;
      for (const auto& t : f.tensors()) dims[t.name] = t.dims;
      const uint64_t E = s.n_experts, d = s.hidden, ff = s.moe_ffn;
      EXPECT_EQ(dims["blk.1.ffn_gate_exps.weight"], (std::vector<uint64_t>{d, ff, E})) << family;
      EXPECT_EQ(dims["blk.1.ffn_down_exps.weight"], (std::vector<uint64_t>{ff, d, E})) << family;
      EXPECT_EQ(dims["blk.1.ffn_gate_inp.weight"], (std::vector<uint64_t>{d, E})) << family;
      EXPECT_FALSE(dims.count("blk.0.ffn_gate.weight")) << family;
      if (family == "qwen2-moe") {
        EXPECT_EQ(f.get_int(a + ".expert_feed_forward_length", -1), s.moe_ffn);
        EXPECT_EQ(f.get_int(a + ".expert_shared_feed_forward_length", -1), s.shared_ffn);
        EXPECT_EQ(dims["blk.0.ffn_gate_inp_shexp.weight"], (std::vector<uint64_t>{d}));
        EXPECT_EQ(dims["blk.0.ffn_down_shexp.weight"], (std::vector<uint64_t>{(uint64_t)s.shared_ffn, d}));
      }
    }
    auto gg = Model::open(path);
    EXPECT_EQ(gg->spec.arch, s.arch) << family;
    EXPECT_EQ(gg->spec.n_experts, s.n_experts);
    EXPECT_EQ(gg->spec.norm_topk_prob, s.norm_topk_prob);
    const double ppl = text_perplexity(Session(*gg), family);
    const json g = json::parse(read_file(arch_dir(family) + "/golden.json", SIZE_MAX));
    EXPECT_LT(std::fabs(ppl / g["eval"]["perplexity"].get<double>() - 1), 1e-4) << family << ": " << ppl;
    EXPECT_LT(std::fabs(ppl / text_perplexity(Session(*hf), family) - 1), 1e-6) << family;
  }
  // llama.cpp's qwen2moe never renormalises: a config that does cannot be expressed
  auto m = Model::open(arch_dir("qwen2-moe"));
  m->spec.norm_topk_prob = true;
  try {
    write_gguf(*m, test::temp_dir("moegguf") + "/n.gguf", GGUFOutType::F32, "n");
    ADD_FAILURE() << "norm_topk_prob exported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("norm_topk_prob"), std::string::npos) << e.what();
  }
}

// A saved MoE checkpoint keeps the family's config: experts, top-k, widths, renormalisation.
TEST(MoeConfig, SavedConfigReadsBackTheSameSpec) {
  for (const char* family : {"mixtral", "qwen2-moe"}) {
    auto m = Model::open(arch_dir(family));
    QuantizeOptions o = test::quantize_for_test(*m, "rtn", 16, 16, 16);
    const std::string out = test::temp_dir("moecfg") + "/m";
    save_quantized(*m, o.recipe, out, false);
    auto back = Model::open(out);
    const ModelSpec &a = m->spec, &b = back->spec;
    EXPECT_EQ(b.arch, a.arch);
    EXPECT_EQ(b.n_experts, a.n_experts);
    EXPECT_EQ(b.top_k, a.top_k);
    EXPECT_EQ(b.moe_ffn, a.moe_ffn);
    EXPECT_EQ(b.shared_ffn, a.shared_ffn);
    EXPECT_EQ(b.norm_topk_prob, a.norm_topk_prob);
    const auto win = first_window(*m, family);
    EXPECT_EQ(forward(*back, win.data(), 1, 64, nullptr, nullptr), forward(*m, win.data(), 1, 64, nullptr, nullptr));
  }
}

}  // namespace
}  // namespace kt
