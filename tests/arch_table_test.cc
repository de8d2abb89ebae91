// The per-architecture name table (core/arch.h) and the layer's tensor lists (model/model.h
// for_each_linear, for_each_tensor, site_consumers): loading reads every checkpoint tensor once,
// the names the table gives for saving and GGUF export are the ones loading maps back, and the
// site groups are the ones the forward pass computes.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "core/arch.h"
#include "export/gguf_writer.h"
#include "export/quantized_model.h"
#include "io/gguf_model.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "model/forward.h"
#include "quant/recipe.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

std::string arch_dir(const std::string& name) { return test::data() + "/models/archs/" + name; }

// Counts info() per name: what Model::from_source reads, and how often.
class CountingSource : public TensorSource {
 public:
  explicit CountingSource(std::shared_ptr<TensorSource> inner) : inner_(std::move(inner)) {}
  bool has(const std::string& n) const override { return inner_->has(n); }
  const TensorInfo& info(const std::string& n) const override {
    reads[n]++;
    return inner_->info(n);
  }
  std::vector<std::string> names() const override { return inner_->names(); }
  std::string describe() const override { return inner_->describe(); }
  mutable std::map<std::string, int> reads;

 private:
  std::shared_ptr<TensorSource> inner_;
};

// The HF names the table gives a model of spec `s` (lm_head only when untied), each once; a
// fused tensor (Phi-3 qkv_proj) once for its parts.
std::vector<std::string> table_hf_names(const ModelSpec& s, bool has_lm_head) {
  const ArchTable& t = arch_table(s);
  std::vector<std::string> v;
  for (const GlobalRow& g : t.globals)
    if (g.id != Global::LmHead || has_lm_head) v.push_back(g.hf);
  LayerWeights proto;
  for (int l = 0; l < s.n_layers; l++)
    proto.for_each_tensor(s, [&](const TensorRow& r, int expert, TensorRole role, const Tensor&) {
      const char* kind = role == TensorRole::Bias ? "bias" : "weight";
      if (const FusedRow* fr = fused_of(t, r.field)) {
        if (r.field == fr->parts[0]) v.push_back(hf_name(*fr, l, kind));
        return;
      }
      v.push_back(hf_name(r, l, kind, expert));
    });
  return v;
}

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

void expect_loading_reads_each_tensor_once(const std::string& dir) {
  SCOPED_TRACE(dir);
  const ModelSpec spec = read_hf_config(dir + "/config.json");
  auto st = std::make_shared<SafetensorsDir>(dir);
  auto counting = std::make_shared<CountingSource>(st);
  auto m = Model::from_source(spec, counting, /*resident=*/true);
  const std::set<std::string> in_file = as_set(st->names());
  for (const std::string& n : in_file) EXPECT_EQ(counting->reads[n], 1) << n;
  for (auto& [n, k] : counting->reads) EXPECT_TRUE(in_file.count(n)) << "read a tensor the checkpoint lacks: " << n;
  // and the table's names for saving are exactly the checkpoint's, none twice
  const std::vector<std::string> names = table_hf_names(spec, !m->tied());
  EXPECT_EQ(names.size(), as_set(names).size());
  EXPECT_EQ(as_set(names), in_file);
}

TEST(ArchTable, LoadingReadsEveryCheckpointTensorExactlyOnce) {
  expect_loading_reads_each_tensor_once(test::tinyllama());
  for (const char* a : {"qwen2.5", "qwen3", "mistral", "llama2", "llama3.2", "phi3", "phi3.5-longrope", "mixtral", "qwen2-moe"})
    if (std::filesystem::exists(arch_dir(a) + "/config.json")) expect_loading_reads_each_tensor_once(arch_dir(a));
}

TEST(ArchTable, RowsHaveUniqueNamesAndFindThemselves) {
  for (const ArchTable* t : all_arch_tables()) {
    SCOPED_TRACE(t->arch);
    std::set<int> fields;
    for (const TensorRow& r : t->layer) {
      EXPECT_TRUE(fields.insert((int)r.field).second);
      int expert = -7;
      if (r.per_expert()) {  // "...experts.*.w1" names every expert: 12 is found as expert 12
        EXPECT_EQ(row_by_hf(*t, hf_suffix(r, 12), &expert), &r);
        EXPECT_EQ(expert, 12);
        EXPECT_EQ(row_by_hf(*t, r.hf), nullptr) << "'*' itself is no expert index";
        EXPECT_EQ(row_by_hf(*t, hf_suffix(r, 1) + "x"), nullptr);
      } else {
        EXPECT_EQ(row_by_hf(*t, r.hf, &expert), &r);
        EXPECT_EQ(expert, -1);
      }
      EXPECT_EQ(row_by_gguf(*t, r.gguf), &r);
      EXPECT_EQ(&t->row(r.field), &r);
    }
    // every dense family has the nine Llama tensors, Qwen3 adds its q/k head norms, Gemma 2 its
    // post-norms; an MoE family has the router and three expert rows in place of gate/up/down
    // (Qwen2-MoE: + the shared expert's three and its gate)
    const std::map<std::string, int> n_fields = {{"qwen3", 11}, {"gemma2", 11}, {"mixtral", 10}, {"qwen2_moe", 14}};
    EXPECT_EQ((int)fields.size(), n_fields.count(t->arch) ? n_fields.at(t->arch) : 9);
    EXPECT_EQ(&arch_table(t->arch), t);
    EXPECT_NE(arch_table_for_gguf(t->gguf_arch), nullptr);
  }
  EXPECT_EQ(gguf_arch_list(), "llama, qwen2, qwen3, gemma, gemma2, qwen2moe, phi3");
  EXPECT_EQ(arch_table_for_gguf("mistral"), nullptr);  // Mistral is written (and read) as llama
  EXPECT_EQ(std::string(arch_table("mistral").gguf_arch), "llama");
  EXPECT_THROW(arch_table("gpt2"), Error);
}

TEST(ArchTable, ShapesBiasesAndPermutationsFollowTheSpec) {
  ModelSpec s;
  s.arch = "qwen2";
  s.hidden = 64, s.n_heads = 4, s.n_kv_heads = 2, s.head_dim = 16, s.ffn = 176, s.vocab = 100, s.n_layers = 1;
  s.attn_qkv_bias = true;
  const ArchTable& t = arch_table(s);
  EXPECT_EQ(row_shape(t.row(Field::Q), s), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(row_shape(t.row(Field::K), s), (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(row_shape(t.row(Field::O), s), (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(row_shape(t.row(Field::Down), s), (std::vector<int64_t>{64, 176}));
  EXPECT_EQ(row_shape(t.row(Field::MlpNorm), s), (std::vector<int64_t>{64}));
  EXPECT_EQ(global_shape(t.global(Global::Embed), s), (std::vector<int64_t>{100, 64}));
  EXPECT_EQ(global_shape(t.global(Global::FinalNorm), s), (std::vector<int64_t>{64}));
  std::vector<Field> biased;
  for (const TensorRow& r : t.layer)
    if (row_has_bias(r, s)) biased.push_back(r.field);
  EXPECT_EQ(biased, (std::vector<Field>{Field::Q, Field::K, Field::V}));
  s.attn_qkv_bias = false, s.mlp_bias = true, s.attn_o_bias = true;
  biased.clear();
  for (const TensorRow& r : t.layer)
    if (row_has_bias(r, s)) biased.push_back(r.field);
  EXPECT_EQ(biased, (std::vector<Field>{Field::O, Field::Gate, Field::Up, Field::Down}));
  EXPECT_EQ(permute_heads(t.row(Field::Q), s), 4);
  EXPECT_EQ(permute_heads(t.row(Field::K), s), 2);
  EXPECT_EQ(permute_heads(t.row(Field::V), s), 0);
  EXPECT_EQ(hf_name(t.row(Field::Gate), 3, "qscale"), "model.layers.3.mlp.gate_proj.qscale");
  EXPECT_EQ(gguf_name(t.row(Field::O), 12, "weight"), "blk.12.attn_output.weight");
}

TEST(ArchTable, Qwen2LayersGetQkvBiasesFromTheTable) {
  const std::string dir = arch_dir("qwen2.5");
  if (!std::filesystem::exists(dir + "/config.json")) GTEST_SKIP() << "no " << dir;
  auto m = Model::open(dir);
  ASSERT_TRUE(m->spec.attn_qkv_bias);
  auto w = m->layer(0);
  std::vector<Field> biased;
  w->for_each_tensor(m->spec, [&](const TensorRow& r, int, TensorRole role, const Tensor& t) {
    if (role != TensorRole::Bias) return;
    biased.push_back(r.field);
    EXPECT_EQ(t.shape, (std::vector<int64_t>{row_shape(r, m->spec)[0]}));
  });
  EXPECT_EQ(biased, (std::vector<Field>{Field::Q, Field::K, Field::V}));
  EXPECT_TRUE(w->o.b.empty());
  EXPECT_TRUE(w->down.b.empty());
}

// The GGUF names the writer emits are the ones the loader maps back to the table's HF names,
// for every tensor; q/k (and their biases) are unpermuted exactly where the table says.
void expect_gguf_round_trip(const std::string& dir, const std::string& tag) {
  SCOPED_TRACE(dir);
  auto m = Model::open(dir);
  const std::string out = test::temp_dir("arch-" + tag) + "/m.gguf";
  write_gguf(*m, out, GGUFOutType::F32, "t");
  auto f = std::make_shared<const GGUFFile>(out);
  const ModelSpec gs = gguf_model_spec(*f);
  EXPECT_EQ(gs.attn_qkv_bias, m->spec.attn_qkv_bias);
  GGUFSource src(f, gs);
  const std::vector<std::string> want = table_hf_names(m->spec, !m->tied());
  EXPECT_EQ(as_set(src.names()), as_set(want));
  EXPECT_EQ(f->tensors().size(), want.size());  // nothing written that the loader drops
  const ArchTable& t = arch_table(m->spec);
  for (const TensorRow& r : t.layer) {
    const int heads = t.gguf_permute_qk ? permute_heads(r, m->spec) : 0;
    EXPECT_EQ(src.info(hf_name(r, 0, "weight")).unpermute_heads, heads) << r.hf;
    if (row_has_bias(r, m->spec)) {
      EXPECT_EQ(src.info(hf_name(r, 0, "bias")).unpermute_heads, heads) << r.hf;
    }
  }
  std::filesystem::remove_all(std::filesystem::path(out).parent_path());
}

TEST(ArchTable, GgufNamesTheWriterEmitsAreTheOnesTheLoaderMapsBack) {
  expect_gguf_round_trip(test::tinyllama(), "llama");
  if (std::filesystem::exists(arch_dir("qwen2.5") + "/config.json")) expect_gguf_round_trip(arch_dir("qwen2.5"), "qwen2");
  if (std::filesystem::exists(arch_dir("qwen3") + "/config.json")) expect_gguf_round_trip(arch_dir("qwen3"), "qwen3");
  for (const char* g : {"gemma", "gemma2"})
    if (std::filesystem::exists(arch_dir(g) + "/config.json")) expect_gguf_round_trip(arch_dir(g), g);
}

// save_quantized writes the table's names: the saved directory holds the checkpoint's names.
TEST(ArchTable, SavedModelHasTheCheckpointsTensorNames) {
  for (const std::string& dir : {test::tinyllama(), arch_dir("qwen2.5"), arch_dir("qwen3"), arch_dir("phi3"), arch_dir("gemma2")}) {
    if (!std::filesystem::exists(dir + "/config.json")) continue;
    SCOPED_TRACE(dir);
    auto m = Model::open(dir);
    const std::string out = test::temp_dir("arch-save") + "/q";
    Recipe r;
    save_quantized(*m, r, out, /*force=*/false);
    SafetensorsDir saved(out), orig(dir);
    std::set<std::string> names;
    for (const std::string& n : saved.names())
      if (n.rfind("kurtail.", 0) != 0) names.insert(n);
    EXPECT_EQ(names, as_set(orig.names()));
    std::filesystem::remove_all(std::filesystem::path(out).parent_path());
  }
}

TEST(ArchTable, ForEachLinearVisitsEachLinearOnceWithTheSpecsShape) {
  auto m = Model::open(test::tinyllama());
  const ArchTable& t = arch_table(m->spec);
  LayerWeights w = *m->layer(0);
  std::set<const Linear*> seen;
  std::vector<Field> fields;
  w.for_each_linear([&](LinearId id, Linear& l) {
    const Field f = id.field;
    EXPECT_TRUE(seen.insert(&l).second);
    EXPECT_EQ(&l, &w.linear(f));
    EXPECT_EQ(l.w.shape, row_shape(t.row(f), m->spec)) << t.row(f).hf;
    fields.push_back(f);
  });
  EXPECT_EQ(fields, (std::vector<Field>{Field::Q, Field::K, Field::V, Field::O, Field::Gate, Field::Up, Field::Down}));
  // site_consumers lists the same linears, each once
  std::set<const Linear*> in_sites;
  for (auto& g : site_consumers(w))
    for (auto& c : g.linears) {
      EXPECT_TRUE(in_sites.insert(c.lin).second);
      EXPECT_EQ(c.lin, &w.linear(c.field));
    }
  EXPECT_EQ(in_sites, seen);
}

// Records the width of each activation site of layer 0.
struct WidthHooks : Hooks {
  std::map<Site, int64_t> cols;
  void on_activation(int layer, Site site, float*, int64_t, int64_t c) override {
    if (layer == 0) cols[site] = c;
  }
};

// site_consumers is the forward pass's graph: each group's linears read the site's activation
// (their in() is its width), and scaling a site's norm equals scaling its consumers' columns.
TEST(ArchTable, SiteConsumersMatchTheForwardPass) {
  auto m = Model::open(test::tinyllama());
  m->truncate_layers(1);
  const std::vector<int32_t> toks = {1, 450, 4996, 1735, 1701, 432, 1720, 975};
  WidthHooks wh;
  const std::vector<float> base = forward(*m, toks.data(), 1, (int)toks.size(), nullptr, &wh);
  const LayerWeights orig = *m->layer(0);
  const auto groups = site_consumers(orig);
  ASSERT_EQ(groups.size(), 4u);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.5f, 2.0f);
  for (size_t gi = 0; gi < groups.size(); gi++) {
    const auto& g = groups[gi];
    SCOPED_TRACE(site_name(g.site));
    ASSERT_TRUE(wh.cols.count(g.site));
    for (const auto& c : g.linears) EXPECT_EQ(c.lin->in(), wh.cols[g.site]);
    if (!g.norm) continue;
    std::vector<float> alpha(g.norm->numel());
    for (float& a : alpha) a = u(rng);
    LayerWeights a = orig, b = orig;
    auto ga = site_consumers(a)[gi];
    for (size_t j = 0; j < alpha.size(); j++) ga.norm->data[j] *= alpha[j];
    auto gb = site_consumers(b)[gi];
    for (auto& c : gb.linears)
      for (int64_t r = 0; r < c.lin->out(); r++)
        for (int64_t j = 0; j < c.lin->in(); j++) c.lin->w.data[r * c.lin->in() + j] *= alpha[j];
    m->set_layer(0, a);
    const auto la = forward(*m, toks.data(), 1, (int)toks.size(), nullptr, nullptr);
    m->set_layer(0, b);
    const auto lb = forward(*m, toks.data(), 1, (int)toks.size(), nullptr, nullptr);
    EXPECT_LT(test::max_rel_diff(la, lb), 1e-5);
    EXPECT_GT(test::max_rel_diff(la, base), 1e-3);  // the scaling did change the model
  }
  m->set_layer(0, orig);
}

}  // namespace
}  // namespace kt
