// Our quantized-model directory (docs/FORMAT.md): input = parts [config.json, recipe.json,
// model.safetensors] plus a generated tokenizer. It is opened the way `kurtail run` opens it
// (Model::open validates it whole against its recipe, quant/validate_model.h; packed weights
// attached to the integer kernels) and, when small, runs two tokens. Seeds: quarot, rtn,
// duquant and crossquant models, so every kind of kurtail.* tensor starts valid.
#include <random>

#include "export/quantized_model.h"
#include "io/hf_config.h"
#include "fuzz_util.h"
#include "io/memory_source.h"
#include "model/forward.h"
#include "model/model.h"
#include "quant/pipeline.h"
#include "runtime/runner.h"

namespace kt {
std::string spec_to_hf_config(const ModelSpec& s);
}
using namespace kt;

static std::string qdir() {
  static const std::string d = [] {
    std::string p = fuzz::scratch_dir() + "/qmodel";
    mkdir(p.c_str(), 0700);
    return p;
  }();
  return d;
}

// llama2.c-style tokenizer.bin with `vocab` single-byte tokens (Model::open uses it when a
// directory has no tokenizer.model/json).
static std::string tokenizer_bin(int vocab) {
  std::string b;
  int32_t maxlen = 1;
  b.append((const char*)&maxlen, 4);
  for (int i = 0; i < vocab; i++) {
    float sc = 0;
    int32_t len = 1;
    char c = (char)('a' + i % 26);
    b.append((const char*)&sc, 4);
    b.append((const char*)&len, 4);
    b += c;
  }
  return b;
}

static const std::vector<std::string>& seeds() {
  static std::vector<std::string> s = [] {
    ModelSpec spec;
    spec.hidden = 32, spec.n_layers = 1, spec.n_heads = 2, spec.n_kv_heads = 1, spec.head_dim = 16;
    spec.ffn = 64, spec.vocab = 32, spec.max_pos = 64;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 0.1f);
    auto src = std::make_shared<MemorySource>("seed");
    auto add = [&](const std::string& n, std::vector<int64_t> shape, float base) {
      Tensor t(shape);
      for (auto& x : t.data) x = base + nd(rng);
      src->add(n, std::move(t));
    };
    add("model.embed_tokens.weight", {32, 32}, 0);
    add("lm_head.weight", {32, 32}, 0);
    add("model.norm.weight", {32}, 1);
    std::string p = "model.layers.0.";
    add(p + "input_layernorm.weight", {32}, 1);
    add(p + "post_attention_layernorm.weight", {32}, 1);
    add(p + "self_attn.q_proj.weight", {32, 32}, 0);
    add(p + "self_attn.k_proj.weight", {16, 32}, 0);
    add(p + "self_attn.v_proj.weight", {16, 32}, 0);
    add(p + "self_attn.o_proj.weight", {32, 32}, 0);
    add(p + "mlp.gate_proj.weight", {64, 32}, 0);
    add(p + "mlp.up_proj.weight", {64, 32}, 0);
    add(p + "mlp.down_proj.weight", {32, 64}, 0);
    std::vector<std::string> out;
    // duquant / crossquant need calibration text (no tokenizer here): their seeds are rtn
    // models given identity site transforms / unit column maxima, which keep the weights exact,
    // so the fuzzer starts from valid kurtail.* tensors of every kind.
    for (const char* method : {"quarot", "rtn", "duquant", "crossquant"}) {
      auto m = Model::from_source(spec, src, true);
      QuantizeOptions o;
      o.progress = false;
      o.recipe.set_method(std::string(method) == "quarot" ? "quarot" : "rtn");
      o.recipe.set_bits(4, 4, 4, spec.head_dim);
      quantize_model(*m, o);
      Recipe& r = o.recipe;
      const Site sites[] = {Site::AttnIn, Site::OIn, Site::MlpIn, Site::DownIn};
      auto width = [&](Site st) { return st == Site::DownIn ? spec.ffn : st == Site::OIn ? spec.q_dim() : spec.hidden; };
      if (std::string(method) == "duquant") {
        r.set_method("duquant");
        r.dq_block = 16;  // two or more blocks per width: the permutation is stored too
        Tensor eye({16, 16});
        for (int i = 0; i < 16; i++) eye.data[i * 16 + i] = 1;
        for (Site st : sites) {
          const int n = width(st);
          std::vector<float> id(n);
          for (int i = 0; i < n; i++) id[i] = (float)i;
          r.tensors[site_tensor_name("site", 0, st, "smooth")] = Tensor::from(std::vector<float>(n, 1.0f));
          r.tensors[site_tensor_name("site", 0, st, "rot_a")] = eye;
          r.tensors[site_tensor_name("site", 0, st, "rot_b")] = eye;
          r.tensors[site_tensor_name("site", 0, st, "perm")] = Tensor::from(id);
        }
      } else if (std::string(method) == "crossquant") {
        r.set_method("crossquant");
        r.crossquant = true;
        for (Site st : sites)
          r.tensors[site_tensor_name("cq", 0, st, "colmax")] = Tensor::from(std::vector<float>(width(st), 1.0f));
      }
      std::string dir = fuzz::scratch_dir() + "/seed_" + method;
      save_quantized(*m, o.recipe, dir, /*force=*/true, /*packed=*/true);
      out.push_back(fuzz::make_parts({read_file(dir + "/config.json", SIZE_MAX), read_file(dir + "/recipe.json", SIZE_MAX),
                                      read_file(dir + "/model.safetensors", SIZE_MAX)}));
    }
    return out;
  }();
  return s;
}

KT_FUZZ_SEEDS(&seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(data, size, 3);
  std::string dir = qdir();
  try {
    fuzz::put("qmodel/config.json", parts[0]);
    ModelSpec s = read_hf_config(dir + "/config.json");
    if ((int64_t)s.hidden * std::max(s.vocab, s.ffn) > (1 << 20) || s.n_layers > 4 || s.vocab > 4096) return 0;
    fuzz::put("qmodel/tokenizer.bin", tokenizer_bin(s.vocab));
    if (parts[1].empty()) unlink((dir + "/recipe.json").c_str());
    else fuzz::put("qmodel/recipe.json", parts[1]);
    fuzz::put("qmodel/model.safetensors", parts[2]);
    RealModel rm = load_real(dir);
    int32_t toks[2] = {0, s.vocab - 1};
    auto logits = forward(rm.model(), toks, 1, 2, nullptr, rm.session.hooks());
    if (logits.size() != (size_t)2 * s.vocab) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
