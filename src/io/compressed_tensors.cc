#include "io/compressed_tensors.h"

#include <cmath>
#include <cstring>
#include <map>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "core/arch.h"
#include "io/hf_config.h"
#include "io/json_checked.h"
#include "io/memory_source.h"
#include "io/safetensors.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

using json = nlohmann::json;

std::vector<int32_t> ct_pack_int32(const int8_t* q, int64_t rows, int64_t cols, int bits) {
  const int per = 32 / bits, offset = 1 << (bits - 1);
  const uint32_t mask = (1u << bits) - 1;
  const int64_t pc = ct_packed_cols(cols, bits);
  std::vector<int32_t> out((size_t)(rows * pc), 0);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      const uint32_t u = (uint32_t)(q[r * cols + c] + offset) & mask;
      uint32_t& w = reinterpret_cast<uint32_t&>(out[(size_t)(r * pc + c / per)]);
      w |= u << (bits * (c % per));
    }
  return out;
}

void ct_unpack_int32(const int32_t* packed, int64_t rows, int64_t cols, int bits, int8_t* q) {
  const int per = 32 / bits, offset = 1 << (bits - 1);
  const uint32_t mask = (1u << bits) - 1;
  const int64_t pc = ct_packed_cols(cols, bits);
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      const uint32_t w = (uint32_t)packed[r * pc + c / per];
      q[r * cols + c] = (int8_t)((int)((w >> (bits * (c % per))) & mask) - offset);
    }
}

namespace {

const json* member(const json& o, const char* k) {
  auto it = o.find(k);
  return it == o.end() || it->is_null() ? nullptr : &*it;
}

json read_config(const std::string& dir) {
  const std::string cfg = join_path(dir, "config.json");
  return parse_json(read_file(cfg), cfg);
}

// One QuantizationArgs object: the fields kurtail can run, refused otherwise.
struct Args {
  int bits;
  std::string strategy;
  int group;
};
Args read_args(const json& a, const std::string& cfg, const std::string& key, bool weights) {
  if (!a.is_object()) fail(cfg, quote(key) + " must be an object, got " + json_type_name(a));
  Args r;
  r.bits = json_number_or<int>(a, "num_bits", 8, cfg);
  if (r.bits != 4 && r.bits != 8)
    fail(cfg, quote(key + ".num_bits") + " is " + std::to_string(r.bits) + "; kurtail reads 4 or 8");
  if (const json* t = member(a, "type"); t && *t != "int") fail(cfg, quote(key + ".type") + " must be \"int\"");
  if (const json* s = member(a, "symmetric"); s && *s != true)
    fail(cfg, quote(key + ".symmetric") + " is false; kurtail reads symmetric quantization only (no zero points)");
  const json* st = member(a, "strategy");
  r.strategy = st && st->is_string() ? st->get<std::string>() : "";
  r.group = json_number_or<int>(a, "group_size", 0, cfg);
  const json* dyn = member(a, "dynamic");
  const bool dynamic = dyn && dyn->is_boolean() && dyn->get<bool>();
  if (weights) {
    if (r.strategy == "channel") r.group = 0;
    else if (r.strategy != "group" || r.group <= 0)
      fail(cfg, quote(key + ".strategy") + " must be \"group\" (with group_size > 0) or \"channel\"");
    if (dynamic) fail(cfg, quote(key + ".dynamic") + " must be false for weights");
    if (const json* ao = member(a, "actorder"); ao && *ao != false && *ao != "static")
      fail(cfg, quote(key + ".actorder") + " is " + ao->dump() + "; weight_g_idx reordering is not read");
  } else if (r.strategy != "token" || !dynamic) {
    fail(cfg, quote(key) + " must be dynamic per-token (strategy \"token\", dynamic true): what kurtail's "
                           "activation quantizer is");
  }
  return r;
}

// compressed-tensors' target matching (utils/match.py is_match): "re:PATTERN" matched from the
// start of the module name (Python re.match), else the module's name or its class ("Linear").
bool target_matches(const std::string& target, const std::string& module) {
  if (target.rfind("re:", 0) == 0) {
    try {
      return std::regex_search(module, std::regex(target.substr(3)), std::regex_constants::match_continuous);
    } catch (const std::regex_error&) {
      return false;
    }
  }
  return target == module || target == "Linear";
}
bool any_matches(const json& targets, const std::string& module) {
  if (targets.is_string()) return target_matches(targets.get<std::string>(), module);
  if (!targets.is_array()) return false;
  for (const json& t : targets)
    if (t.is_string() && target_matches(t.get<std::string>(), module)) return true;
  return false;
}

// A linear of the checkpoint: its module name, shape, whether it is a down_proj (R4's target) and
// whether it stays full precision (routing linears, which kurtail never quantizes).
struct LinearEntry {
  std::string name;
  int64_t out, in;
  bool down, routing, bias;
};
std::vector<LinearEntry> checkpoint_linears(const ModelSpec& s) {
  const ArchTable& t = arch_table(s);
  std::vector<LinearEntry> v;
  for (int l = 0; l < s.n_layers; l++) {
    std::set<const FusedRow*> done;
    for (const TensorRow& row : t.layer) {
      if (row.is_norm()) continue;
      const auto shp = row_shape(row, s);
      const bool down = row.field == Field::Down || row.field == Field::ExpDown || row.field == Field::ShDown;
      if (const FusedRow* fr = fused_of(t, row.field)) {
        if (!done.insert(fr).second) continue;
        int64_t out = 0;
        bool bias = false;
        for (Field f : fr->parts) {
          out += row_shape(t.row(f), s)[0];
          bias = bias || row_has_bias(t.row(f), s);
        }
        v.push_back({hf_name(*fr, l), out, shp[1], false, false, bias});
        continue;
      }
      const int experts = row.per_expert() ? s.n_experts : 1;
      for (int e = 0; e < experts; e++)
        v.push_back({hf_name(row, l, nullptr, row.per_expert() ? e : -1), shp[0], shp[1], down, row.routing(),
                     row_has_bias(row, s)});
    }
  }
  return v;
}

// The values of a shape tensor (I64 or I32; its dtype and element count are checked by the caller).
std::vector<int64_t> int_values(const TensorInfo& ti) {
  std::vector<int64_t> v;
  const size_t n = ti.dtype == DType::I64 ? ti.nbytes / 8 : ti.nbytes / 4;
  for (size_t i = 0; i < n; i++) {
    if (ti.dtype == DType::I64) {
      int64_t x;
      std::memcpy(&x, ti.data + 8 * i, 8);
      v.push_back(x);
    } else {
      int32_t x;
      std::memcpy(&x, ti.data + 4 * i, 4);
      v.push_back(x);
    }
  }
  return v;
}

// The online transform groups: at most one, an R4 on exactly the down_proj linears.
void read_transforms(const json& tc, const std::string& cfg, const std::vector<LinearEntry>& lins, CtQuant& q,
                     std::string* scheme_name) {
  if (!tc.is_object() || tc.empty()) return;
  const json* groups = member(tc, "config_groups");
  if (!groups || !groups->is_object()) fail(cfg, "'transform_config.config_groups' must be an object");
  for (auto it = groups->begin(); it != groups->end(); ++it) {
    const std::string key = "transform_config.config_groups." + it.key();
    const json& g = it.value();
    if (!g.is_object()) fail(cfg, quote(key) + " must be an object");
    const json* type = member(g, "type");
    if (!type || !type->is_string()) fail(cfg, quote(key + ".type") + " must be a string");
    if (const json* rnd = member(g, "randomize"); rnd && *rnd != false)
      fail(cfg, quote(key + ".randomize") + " is true; permuted transforms are not read");
    const json* apply = member(g, "apply");
    if (!apply || !apply->is_array()) fail(cfg, quote(key + ".apply") + " must be an array");
    bool online = false;
    for (const json& a : *apply) {
      const json* loc = a.is_object() ? member(a, "location") : nullptr;
      if (!loc || !loc->is_string()) fail(cfg, quote(key + ".apply") + " entries need a string 'location'");
      const std::string l = loc->get<std::string>();
      if (l == "weight_input" || l == "weight_output") continue;  // offline: already in the weights
      if (l != "input")
        fail(cfg, quote(key) + " has an online transform at location " + quote(l) +
                      "; kurtail runs online transforms only at the down_proj input (R4)");
      if (const json* inv = member(a, "inverse"); inv && *inv != false)
        fail(cfg, quote(key) + ": an inverse online input transform is not read");
      const json* targets = member(a, "targets");
      const json* ignore = member(a, "ignore");
      for (const LinearEntry& e : lins) {
        const bool hit = targets && any_matches(*targets, e.name) && !(ignore && any_matches(*ignore, e.name));
        if (hit != e.down)
          fail(cfg, quote(key) + (hit ? " applies an online input transform to " + quote(e.name) + ", which is no down_proj"
                                      : " leaves down_proj " + quote(e.name) + " without its online transform"));
      }
      online = true;
    }
    if (!online) continue;
    if (q.r4) fail(cfg, "'transform_config' has two online input transforms on down_proj");
    q.r4 = true;
    q.r4_type = type->get<std::string>();
    *scheme_name = it.key();
    const int hd = json_number_or<int>(g, "head_dim", 0, cfg);
    if (hd < 0) fail(cfg, quote(key + ".head_dim") + " must be positive");
    for (const LinearEntry& e : lins)
      if (e.down && hd > 0 && e.in % hd != 0)
        fail(cfg, quote(key + ".head_dim") + " " + std::to_string(hd) + " does not divide the down_proj input width " +
                      std::to_string(e.in));
    q.r4_block = hd;
  }
}

// The stored transform matrix of one down_proj: [n, n], entries +-1 (a Hadamard, unnormalised:
// both compressed-tensors and vLLM divide by sqrt(n)); `hadamard` ones must be Sylvester's.
Tensor read_r4_matrix(const TensorSource& src, const std::string& name, int64_t n, bool sylvester) {
  if (!src.has(name)) fail(src.describe(), "missing tensor " + quote(name) + " (the online transform's matrix)");
  const TensorInfo& ti = src.info(name);
  if (ti.shape != std::vector<int64_t>{n, n})
    fail(src.describe(), "tensor " + quote(name) + " has shape " + shape_str(ti.shape) + "; expected " +
                             shape_str({n, n}));
  if (ti.dtype != DType::F32 && ti.dtype != DType::F16 && ti.dtype != DType::BF16)
    fail(src.describe(), "tensor " + quote(name) + " is " + dtype_name(ti.dtype) + "; expected F32, F16 or BF16");
  Tensor m = to_f32(ti);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < n; j++) {
      const float v = m.data[(size_t)(i * n + j)];
      // Sylvester: H[i][j] = (-1)^popcount(i & j)
      const float want = (__builtin_popcountll((uint64_t)(i & j)) & 1) ? -1.0f : 1.0f;
      if (sylvester ? v != want : (v != 1.0f && v != -1.0f))
        fail(src.describe(), "tensor " + quote(name) + " is not " +
                                 (sylvester ? "the Sylvester Hadamard matrix" : "a +-1 Hadamard matrix") + " (entry [" +
                                 std::to_string(i) + ", " + std::to_string(j) + "])");
    }
  return m;
}

}  // namespace

bool is_compressed_tensors_dir(const std::string& dir) {
  if (!is_directory(dir) || !file_exists(join_path(dir, "config.json"))) return false;
  const json j = read_config(dir);
  const json* qc = j.is_object() ? member(j, "quantization_config") : nullptr;
  const json* qm = qc && qc->is_object() ? member(*qc, "quant_method") : nullptr;
  return qm && *qm == "compressed-tensors";
}

CtModel read_compressed_tensors(const std::string& dir) {
  const std::string cfg = join_path(dir, "config.json");
  CtModel out;
  out.spec = read_hf_config(cfg);
  const ModelSpec& s = out.spec;
  const json j = read_config(dir);
  const json& qc = j.at("quantization_config");
  if (!qc.is_object()) fail(cfg, "'quantization_config' must be an object");
  if (const json* f = member(qc, "format"); !f || *f != "pack-quantized")
    fail(cfg, "'quantization_config.format' is " + (f ? f->dump() : std::string("missing")) +
                  "; kurtail reads \"pack-quantized\"");
  if (member(qc, "kv_cache_scheme"))
    fail(cfg, "'quantization_config.kv_cache_scheme' is set; kurtail reads checkpoints without one (the KV cache "
              "is chosen at serving time)");
  const json* groups = member(qc, "config_groups");
  if (!groups || !groups->is_object() || groups->size() != 1)
    fail(cfg, "'quantization_config.config_groups' must hold exactly one scheme");
  const std::string gkey = "quantization_config.config_groups." + groups->begin().key();
  const json& g = groups->begin().value();
  if (!g.is_object()) fail(cfg, quote(gkey) + " must be an object");
  const json* targets = member(g, "targets");
  if (!targets || *targets != json::array({"Linear"})) fail(cfg, quote(gkey + ".targets") + " must be [\"Linear\"]");
  if (member(g, "output_activations")) fail(cfg, quote(gkey + ".output_activations") + " is not read");
  const json* w = member(g, "weights");
  if (!w) fail(cfg, quote(gkey + ".weights") + " is missing");
  const Args wa = read_args(*w, cfg, gkey + ".weights", true);
  CtQuant& q = out.quant;
  q.w_bits = wa.bits;
  q.w_group = wa.group;
  if (const json* ia = member(g, "input_activations")) q.a_bits = read_args(*ia, cfg, gkey + ".input_activations", false).bits;
  std::set<std::string> ignored;
  if (const json* ig = member(qc, "ignore")) {
    if (!ig->is_array()) fail(cfg, "'quantization_config.ignore' must be an array");
    for (const json& n : *ig) {
      if (n != "lm_head") fail(cfg, "'quantization_config.ignore' lists " + n.dump() + "; kurtail reads only \"lm_head\" there");
      ignored.insert("lm_head");
    }
  }
  q.quant_lm_head = !ignored.count("lm_head");
  if (q.quant_lm_head) fail(cfg, "a quantized lm_head (not in 'quantization_config.ignore') is not read");

  const std::vector<LinearEntry> lins = checkpoint_linears(s);
  std::string scheme;
  if (const json* tc = member(qc, "transform_config")) read_transforms(*tc, cfg, lins, q, &scheme);

  SafetensorsDir src(dir);
  const std::string file = src.describe();
  auto mem = std::make_shared<MemorySource>(dir);
  std::set<std::string> used;
  auto take = [&](const std::string& n) -> const TensorInfo& {
    used.insert(n);
    return src.info(n);
  };
  auto float_tensor = [&](const std::string& n, const std::vector<int64_t>& shape) {
    if (!src.has(n)) fail(file, "missing tensor " + quote(n));
    const TensorInfo& ti = take(n);
    if (ti.dtype != DType::F32 && ti.dtype != DType::F16 && ti.dtype != DType::BF16)
      fail(file, "tensor " + quote(n) + " is " + dtype_name(ti.dtype) + "; expected F32, F16 or BF16");
    if (ti.shape != shape) fail(file, "tensor " + quote(n) + " has shape " + shape_str(ti.shape) + "; config.json gives " + shape_str(shape));
    mem->add(n, to_f32(ti));
  };
  const ArchTable& t = arch_table(s);
  for (const GlobalRow& gr : t.globals)
    if (gr.id != Global::LmHead || !s.tie_embeddings) float_tensor(gr.hf, global_shape(gr, s));
  for (int l = 0; l < s.n_layers; l++)
    for (const TensorRow& row : t.layer)
      if (row.is_norm()) float_tensor(hf_name(row, l, "weight"), row_shape(row, s));
  bool all_f16 = true;
  Tensor r4_first;
  for (const LinearEntry& e : lins) {
    if (e.bias) float_tensor(e.name + ".bias", {e.out});
    if (e.routing) {  // kurtail keeps routing linears in full precision (docs/DESIGN.md)
      float_tensor(e.name + ".weight", {e.out, e.in});
      continue;
    }
    const std::string pk = e.name + ".weight_packed", sc = e.name + ".weight_scale", sh = e.name + ".weight_shape";
    if (!src.has(pk))
      fail(file, "missing tensor " + quote(pk) + (src.has(e.name + ".weight") ? " (the linear is stored unquantized)" : ""));
    if (!src.has(sc)) fail(file, "missing tensor " + quote(sc));
    if (!src.has(sh)) fail(file, "missing tensor " + quote(sh));
    const TensorInfo& shi = take(sh);
    if ((shi.dtype != DType::I64 && shi.dtype != DType::I32) || shi.shape != std::vector<int64_t>{2})
      fail(file, "tensor " + quote(sh) + " must be I64 or I32 [2], got " + dtype_name(shi.dtype) + " " + shape_str(shi.shape));
    if (int_values(shi) != std::vector<int64_t>{e.out, e.in})
      fail(file, "tensor " + quote(sh) + " says " + shape_str(int_values(shi)) + " but config.json gives " +
                     shape_str({e.out, e.in}));
    const int bits = q.w_bits;
    const int64_t pc = ct_packed_cols(e.in, bits);
    const TensorInfo& pi = take(pk);
    if (pi.dtype != DType::I32 || pi.shape != std::vector<int64_t>{e.out, pc} || pi.nbytes != (size_t)(e.out * pc * 4))
      fail(file, "tensor " + quote(pk) + " is " + dtype_name(pi.dtype) + " " + shape_str(pi.shape) + "; expected I32 " +
                     shape_str({e.out, pc}) + " (" + std::to_string(bits) + "-bit weights of " + shape_str({e.out, e.in}) + ")");
    if (q.w_group > 0 && e.in % q.w_group != 0)
      fail(cfg, "weights group_size " + std::to_string(q.w_group) + " does not divide the input width " + std::to_string(e.in) +
                    " of " + quote(e.name));
    const int64_t G = q.w_group > 0 ? e.in / q.w_group : 1;
    const TensorInfo& si = take(sc);
    if (si.dtype != DType::F32 && si.dtype != DType::F16 && si.dtype != DType::BF16)
      fail(file, "tensor " + quote(sc) + " is " + dtype_name(si.dtype) + "; expected F32, F16 or BF16");
    if (si.shape != std::vector<int64_t>{e.out, G})
      fail(file, "tensor " + quote(sc) + " has shape " + shape_str(si.shape) + "; expected " + shape_str({e.out, G}));
    all_f16 = all_f16 && si.dtype == DType::F16;
    Tensor scale = to_f32(si);
    for (float v : scale.data)
      if (!std::isfinite(v) || v <= 0) fail(file, "tensor " + quote(sc) + " has a scale that is not finite and > 0");
    std::vector<int32_t> words((size_t)(e.out * pc));
    std::memcpy(words.data(), pi.data, pi.nbytes);
    std::vector<int8_t> codes((size_t)(e.out * e.in));
    ct_unpack_int32(words.data(), e.out, e.in, bits, codes.data());
    // every code of the signed range decodes (kurtail's grid is [-2^(b-1), 2^(b-1)-1], as is
    // compressed-tensors' q_min..q_max); Model::load_layer checks the weights are on that grid
    Tensor wq({e.out, e.in});
    const int64_t gs = e.in / G;
    for (int64_t r = 0; r < e.out; r++)
      for (int64_t c = 0; c < e.in; c++)
        wq.data[(size_t)(r * e.in + c)] = (float)codes[(size_t)(r * e.in + c)] * scale.data[(size_t)(r * G + c / gs)];
    mem->add(e.name + ".weight", std::move(wq));
    mem->add(e.name + ".qscale", std::move(scale));
    mem->add(e.name + ".qbits", Tensor::from({(float)bits}));
    if (q.r4 && e.down) {
      const int64_t n = q.r4_block > 0 ? q.r4_block : e.in;
      const std::string tn = e.name + "." + scheme + "_input.weight";
      used.insert(tn);
      Tensor m = read_r4_matrix(src, tn, n, q.r4_type == "hadamard");
      if (r4_first.empty()) r4_first = std::move(m);
      else if (m.shape == r4_first.shape && m.data != r4_first.data)  // (MoE: another width, its own R4)
        fail(file, "tensor " + quote(tn) + " differs from the first down_proj's; kurtail runs one R4 per width");
    }
  }
  q.scales_f16 = all_f16;
  if (q.r4 && q.r4_type != "hadamard") q.r4_matrix = std::move(r4_first);
  for (const std::string& n : src.names())
    if (!used.count(n))
      fail(file, "unexpected tensor " + quote(n) + " (not part of a pack-quantized " + s.arch + " checkpoint kurtail reads)");
  out.tensors = mem;
  return out;
}

}  // namespace kt
