#include "export/compressed_tensors.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "core/arch.h"
#include "io/compressed_tensors.h"
#include "io/hf_config.h"
#include "io/json_checked.h"
#include "io/safetensors.h"
#include "kernels/packed.h"
#include "kernels/wtype.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"
#include "util/output.h"

namespace kt {

using json = nlohmann::json;

namespace {

const char* const kOutFiles[] = {"config.json",           "model.safetensors",       "kurtail_export.json",
                                 "tokenizer.model",       "tokenizer.json",          "tokenizer_config.json",
                                 "special_tokens_map.json", "generation_config.json"};
constexpr const char* kMarker = "kurtail-compressed-tensors-export";

DType out_dtype(const std::string& d) {
  if (d == "float16") return DType::F16;
  if (d == "bfloat16") return DType::BF16;
  if (d == "float32") return DType::F32;
  fail("--dtype must be float16, bfloat16 or float32, got " + quote(d));
}

std::string float_bytes(const std::vector<float>& v, DType t) {
  std::string b;
  b.reserve(v.size() * dtype_size(t));
  for (float x : v) {
    if (t == DType::F32) {
      b.append(reinterpret_cast<const char*>(&x), 4);
    } else {
      const uint16_t h = t == DType::F16 ? f32_to_f16(x) : f32_to_bf16(x);
      b.append(reinterpret_cast<const char*>(&h), 2);
    }
  }
  return b;
}

template <class T>
std::string pod_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// The integer codes of a quantized linear, [out, in]: unpacked from its packed form, or
// w / scale of its fake-quant weights (exact: w = q * scale was computed from that q).
std::vector<int8_t> linear_codes(const Linear& li, const std::string& what) {
  const int64_t N = li.out(), K = li.in();
  std::vector<int8_t> q((size_t)(N * K));
  if (li.packed) {
    if (li.packed->N != N || li.packed->K != K) fail(what + ": packed weight size disagrees with its shape");
    unpack_weights_ref(*li.packed, q.data());
    return q;
  }
  const std::optional<WType> type = wtype_for_bits(li.qbits);
  if (!type) fail(what + ": no weight type of " + std::to_string(li.qbits) + " bits");
  const WTypeTraits& tt = wtype_traits(*type);
  const int64_t G = li.qscale.dim(1), gs = K / G;
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++)
      if (!grid_code(tt, li.w.data[(size_t)(n * K + k)], li.qscale.data[(size_t)(n * G + k / gs)], &q[(size_t)(n * K + k)]))
        fail(what + ": weight not on its int" + std::to_string(li.qbits) + " grid");
  return q;
}

// "re:" targets of every down_proj of the family (compressed-tensors matches them from the start
// of the module name): the table's suffix, dots escaped, an expert index as \d+.
json down_targets(const ModelSpec& s) {
  const ArchTable& t = arch_table(s);
  json v = json::array();
  for (const TensorRow& row : t.layer) {
    if (row.field != Field::Down && row.field != Field::ExpDown && row.field != Field::ShDown) continue;
    std::string re = "re:.*\\.";
    for (const char* p = row.hf; *p; p++) {
      if (*p == '.') re += "\\.";
      else if (*p == '*') re += "\\d+";
      else re += *p;
    }
    v.push_back(re + "$");
  }
  return v;
}

json quant_args(int bits, const char* strategy, int group, bool dynamic) {
  return {{"num_bits", bits},     {"type", "int"},        {"symmetric", true},
          {"group_size", group > 0 ? json(group) : json(nullptr)},
          {"strategy", strategy}, {"block_structure", nullptr}, {"dynamic", dynamic},
          {"actorder", nullptr},  {"observer", nullptr},        {"observer_kwargs", json::object()}};
}

// The width of the R4 of every down_proj and its block (= the width for a full Hadamard).
int r4_block_of(const Recipe& r, int width) { return r.r4_block > 0 ? r.r4_block : width; }
bool is_pow2(int n) { return n > 0 && (n & (n - 1)) == 0; }

json quantization_config(const Model& m, const Recipe& r) {
  json group = {{"targets", {"Linear"}},
                {"weights", quant_args(r.w.bits, r.w.gran == Granularity::PerGroup ? "group" : "channel",
                                       r.w.gran == Granularity::PerGroup ? r.w.group : 0, false)},
                {"input_activations", r.a.enabled() ? quant_args(r.a.bits, "token", 0, true) : json(nullptr)},
                {"output_activations", nullptr},
                {"format", "pack-quantized"}};
  json tc = json::object();
  if (r.r4) {
    const int width = m.spec.down_widths()[0];
    const int b = r4_block_of(r, width);
    json apply = json::array();
    apply.push_back({{"targets", down_targets(m.spec)}, {"location", "input"}, {"inverse", false}, {"ignore", json::array()}});
    apply.push_back(
        {{"targets", down_targets(m.spec)}, {"location", "weight_input"}, {"inverse", true}, {"ignore", json::array()}});
    // Sylvester blocks run on vLLM's hadacore kernel ("hadamard"); kurtail's full Hadamard of a
    // width that is no power of two (Kronecker with a Paley factor) is stored as a dense +-1
    // matrix of type "random-hadamard", which vLLM applies as a GEMM after dividing by sqrt(n)
    // (compressed-tensors' HadamardTransform divides by sqrt(n) too).
    const bool sylvester = is_pow2(b);
    tc = {{"config_groups",
           {{"R4",
             {{"type", sylvester ? "hadamard" : "random-hadamard"},
              {"apply", apply},
              {"randomize", false},
              {"requires_grad", false},
              {"head_dim", b},
              {"precision", "torch.float32"}}}}}};
  }
  return {{"quant_method", "compressed-tensors"},
          {"version", kCtVersion},
          {"format", "pack-quantized"},
          {"quantization_status", "compressed"},
          {"global_compression_ratio", nullptr},
          {"config_groups", {{"group_0", group}}},
          {"ignore", {"lm_head"}},
          {"kv_cache_scheme", nullptr},
          {"sparsity_config", json::object()},
          {"transform_config", tc}};
}

OutputPolicy ct_policy(const Model& m, bool force) {
  OutputPolicy p;
  p.force = force;
  p.kind = "compressed-tensors directory";
  p.is_own_output = is_kurtail_ct_dir;
  if (!m.path.empty()) p.inputs.push_back(m.path);
  if (!m.tokenizer_path.empty()) p.inputs.push_back(m.tokenizer_path);
  return p;
}

}  // namespace

std::vector<std::string> check_ct_export(const Model& m, const Recipe& r, const CtExportOptions& o,
                                         const std::string& path) {
  out_dtype(o.dtype);
  std::vector<std::string> notes;
  const std::string pre = "compressed-tensors cannot express ";
  if (r.r3 && !o.drop_r3)
    fail(path, pre + "R3 (the online Q/K Hadamard; vLLM applies no q_attn/k_cache transform): quantize with --no-r3, "
                     "or pass --drop-r3 to export without it");
  if (r.r3) notes.push_back("R3 (online Q/K Hadamard) dropped: the served model runs without it");
  if (r.online_had_inputs) fail(path, pre + "the online Hadamard before every linear input (method " + quote(r.method) + ")");
  if (r.crossquant) fail(path, pre + "CrossQuant's per-element activation scales");
  if (r1_runs_online(r, m.spec)) fail(path, pre + "an R1 that runs online after post-norms (Gemma 2)");
  if (r.tensors.size() > r.tensors.count(kOnlineR1Tensor)) fail(path, pre + "per-site online transforms (method " + quote(r.method) + ")");
  if (r.r4 && r.r4_kind != "hadamard")
    fail(path, pre + "an R4 of kind " + quote(r.r4_kind) + " (only Hadamard transforms; quantize with --r4-block)");
  if (r.quant_lm_head) fail(path, "a quantized lm_head is not exported (quantize without --quant-lm-head)");
  if (!r.w.enabled() || (r.w.bits != 4 && r.w.bits != 8) || !r.w.symmetric || r.w.gran == Granularity::PerTensor)
    fail(path, "weights must be symmetric 4- or 8-bit per channel or per group for pack-quantized (recipe: " +
                   std::to_string(r.w.bits) + " bits" + (r.w.symmetric ? "" : ", asymmetric") + ")");
  if (r.a.enabled() && ((r.a.bits != 4 && r.a.bits != 8) || !r.a.symmetric || r.a.gran != Granularity::PerRow))
    fail(path, "activations must be symmetric per-token 4- or 8-bit (vLLM's dynamic schemes), or 16");
  if (r.a.enabled() && r.a.clip_ratio != 1.0f)
    notes.push_back("activation clip ratio " + fmt_num(r.a.clip_ratio) +
                    " not carried: compressed-tensors has no field for it, vLLM quantizes with the absmax (clip 1)");
  if (r.k.enabled() || r.v.enabled())
    notes.push_back("K/V cache quantization (" + std::to_string(r.k.bits) + "/" + std::to_string(r.v.bits) +
                    " bits) not in the checkpoint: vLLM chooses it at serving time (--kv-cache-dtype)");
  if (r.w.scale_f16 && o.dtype == "bfloat16") notes.push_back("fp16 weight scales rounded to bfloat16");
  if (!r.w.scale_f16 && o.dtype != "float32")
    notes.push_back("weight scales rounded to " + o.dtype + " (exact with --dtype float32, or quantize with --w-scale f16)");
  const bool hf_tok = is_directory(m.tokenizer_path) && (file_exists(join_path(m.tokenizer_path, "tokenizer.json")) ||
                                                         file_exists(join_path(m.tokenizer_path, "tokenizer.model")));
  if (!hf_tok)
    notes.push_back("no Hugging Face tokenizer files to copy (the vocabulary came from a llama2.c or GGUF file): "
                    "add tokenizer.json or tokenizer.model before serving");
  if (r.r4) {
    const int width = m.spec.down_widths()[0];
    const int b = r4_block_of(r, width);
    if (!is_pow2(b))
      notes.push_back("R4 is kurtail's full Hadamard of order " + std::to_string(b) +
                      " (no power of two): stored dense, vLLM runs it as a GEMM, not its fast Hadamard kernel "
                      "(quantize with --r4-block for that)");
    if (m.spec.down_widths().size() > 1)
      fail(path, pre + "R4 on down_proj inputs of several widths (mixture of experts with a shared expert)");
    notes.push_back("online R4 in vLLM needs tensor parallelism 1 (--tensor-parallel-size 1)");
  }
  return notes;
}

bool is_kurtail_ct_dir(const std::string& dir) {
  std::error_code ec;
  bool marker = false;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (!e.is_regular_file(ec) || e.is_symlink(ec)) return false;
    const std::string name = e.path().filename().string();
    bool known = false;
    for (const char* f : kOutFiles) known = known || name == f;
    if (!known) return false;
    marker = marker || name == "kurtail_export.json";
  }
  if (ec || !marker) return false;
  try {
    return read_file(join_path(dir, "kurtail_export.json")).find(kMarker) != std::string::npos;
  } catch (const Error&) {
    return false;
  }
}

void write_compressed_tensors(const Model& m, const Recipe& r, const std::string& out, const CtExportOptions& o,
                              const std::vector<std::string>& notes) {
  const DType ft = out_dtype(o.dtype);
  const OutputPolicy policy = ct_policy(m, o.force);
  check_output(out, policy, /*is_dir=*/true);
  OutputDir dir(out, policy);
  const std::string& tmp = dir.path();
  const ArchTable& table = arch_table(m.spec);
  std::vector<RawTensor> ts;
  auto add_float = [&](const std::string& n, const Tensor& t) { ts.push_back({n, ft, t.shape, float_bytes(t.data, ft)}); };
  auto add_norm = [&](const std::string& n, const Tensor& t) {
    std::vector<float> v = t.data;  // held as multipliers; Gemma's checkpoints store multiplier - 1
    for (float& x : v) x -= m.spec.norm_offset;
    ts.push_back({n, ft, t.shape, float_bytes(v, ft)});
  };
  const int bits = r.w.bits;
  std::map<int, Tensor> r4_matrix;  // per width: the stored (unnormalised, +-1) matrix
  auto r4_of = [&](int width) -> const Tensor& {
    auto it = r4_matrix.find(width);
    if (it != r4_matrix.end()) return it->second;
    const int b = r4_block_of(r, width);
    // one block (its b x b matrix is every diagonal block), or the full Hadamard of the width
    Tensor q = (r.r4_block > 0 ? Rotation::block_hadamard(b, b) : r4_rotation(r, width)).matrix();
    Tensor h({b, b});
    const float root = std::sqrt((float)b);
    for (int i = 0; i < b; i++)
      for (int j = 0; j < b; j++) h.data[(size_t)i * b + j] = std::nearbyint(q.data[(size_t)i * b + j] * root);
    return r4_matrix.emplace(width, std::move(h)).first->second;
  };
  // One quantized linear (several parts concatenated along out for a fused row): packed codes,
  // scales, shape; then the R4 matrix on a down_proj.
  auto add_linear = [&](const std::string& n, const std::vector<const Linear*>& parts, bool down, int layer) {
    const int64_t K = parts[0]->in();
    int64_t N = 0;
    std::vector<int8_t> codes;
    std::vector<float> scales;
    int64_t G = -1;
    for (const Linear* li : parts) {
      const std::string what = m.path + ": layer " + std::to_string(layer) + " " + n;
      if (li->qscale.empty() || li->qbits != bits) fail(what + " is not quantized as the recipe's weights");
      if (G >= 0 && li->qscale.dim(1) != G) fail(what + ": fused parts with different scale groups");
      G = li->qscale.dim(1);
      std::vector<int8_t> c = linear_codes(*li, what);
      codes.insert(codes.end(), c.begin(), c.end());
      scales.insert(scales.end(), li->qscale.data.begin(), li->qscale.data.end());
      N += li->out();
    }
    ts.push_back({n + ".weight_packed", DType::I32, {N, ct_packed_cols(K, bits)}, pod_bytes(ct_pack_int32(codes.data(), N, K, bits))});
    ts.push_back({n + ".weight_scale", ft, {N, G}, float_bytes(scales, ft)});
    ts.push_back({n + ".weight_shape", DType::I64, {2}, pod_bytes(std::vector<int64_t>{N, K})});
    std::vector<float> bias;
    for (const Linear* li : parts) bias.insert(bias.end(), li->b.data.begin(), li->b.data.end());
    if (!bias.empty()) ts.push_back({n + ".bias", ft, {N}, float_bytes(bias, ft)});
    if (down && r.r4) {
      const Tensor& h = r4_of((int)K);
      ts.push_back({n + ".R4_input.weight", ft, h.shape, float_bytes(h.data, ft)});
    }
  };
  add_float(table.global(Global::Embed).hf, m.embed);
  for (int l = 0; l < m.spec.n_layers; l++) {
    check_interrupted();
    const std::shared_ptr<const LayerWeights> lw = m.layer(l);
    const LayerWeights& w = *lw;
    w.for_each_tensor(m.spec, [&](const TensorRow& row, int expert, TensorRole role, const Tensor& t) {
      if (row.is_norm()) return add_norm(hf_name(row, l, "weight"), t);
      if (role != TensorRole::Weight) return;
      const Linear& li = w.linear(row.field, expert);
      const std::string n = hf_name(row, l, nullptr, expert);
      if (row.routing()) {  // full precision, as kurtail runs them (vLLM leaves gate layers unquantized)
        add_float(n + ".weight", li.w);
        if (!li.b.empty()) add_float(n + ".bias", li.b);
        return;
      }
      const FusedRow* fr = fused_of(table, row.field);
      const bool down = row.field == Field::Down || row.field == Field::ExpDown || row.field == Field::ShDown;
      if (!fr) return add_linear(n, {&li}, down, l);
      if (row.field != fr->parts[0]) return;
      std::vector<const Linear*> parts;
      for (Field p : fr->parts) parts.push_back(&w.linear(p));
      add_linear(hf_name(*fr, l), parts, false, l);
    });
  }
  add_norm(table.global(Global::FinalNorm).hf, m.final_norm);
  if (!m.tied()) add_float(table.global(Global::LmHead).hf, m.lm_head.w);
  write_safetensors_raw(tmp + "/model.safetensors", ts, {{"format", "pt"}});
  ts.clear();

  ModelSpec s = m.spec;
  s.tie_embeddings = m.tied();  // R1 made lm_head differ from the embeddings: untied
  json cfg = parse_json(spec_to_hf_config(s), "config.json");
  cfg["torch_dtype"] = o.dtype;
  cfg["quantization_config"] = quantization_config(m, r);
  write_file_atomic(tmp + "/config.json", cfg.dump(2) + "\n");
  json info = {{"format", kMarker},
               {"version", 1},
               {"source", {{"method", r.method}, {"weight_algo", r.weight_algo}, {"recipe", json::parse(r.to_json())}}},
               {"notes", notes},
               {"serving",
                {{"kv_cache", "not in the checkpoint: choose with vLLM's --kv-cache-dtype"},
                 {"tensor_parallel_size", r.r4 ? json(1) : json("any")}}}};
  write_file_atomic(tmp + "/kurtail_export.json", info.dump(2) + "\n");
  if (!m.tokenizer_path.empty() && is_directory(m.tokenizer_path))
    for (const char* f : {"tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                          "generation_config.json"}) {
      const std::string src = join_path(m.tokenizer_path, f);
      if (file_exists(src)) write_file_atomic(join_path(tmp, f), read_file(src, kMaxTokenizerBytes));
    }
  check_interrupted();
  dir.commit();
}

}  // namespace kt
