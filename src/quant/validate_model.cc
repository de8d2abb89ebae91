// The checks listed in validate_model.h. Messages: "FILE: problem" with FILE recipe.json or the
// safetensors file that holds the entry, and every name read from a file quote()d.
#include "quant/validate_model.h"

#include "quant/ct_model.h"

#include "quant/methods.h"
#include "quant/options.h"

#include <cblas.h>

#include <cmath>
#include <map>
#include <set>

#include "core/arch.h"
#include "io/hf_config.h"
#include "io/safetensors.h"
#include "kernels/wtype.h"
#include "model/fused.h"
#include "model/linear_quant.h"
#include "transform/duquant.h"
#include "transform/rotation.h"
#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"

namespace kt {

namespace {

void in_range(const std::string& path, const std::string& key, double v, double lo, double hi, bool lo_open,
              bool hi_open) {
  const bool ok = std::isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  if (!ok)
    fail(path, "'" + key + "' is " + fmt_num(v) + "; must be in " + (lo_open ? "(" : "[") + fmt_num(lo) + ", " + fmt_num(hi) +
                   (hi_open ? ")" : "]"));
}

// Checks each option a section visits against its declared range; the recipe is not changed.
class CheckRanges : public OptionVisitor {
 public:
  CheckRanges(const std::string& path, const std::string& section) : path_(path), section_(section) {}
  void real(double& v, double, const Opt& o, RealRange r) override {
    const bool wider = r.load_hi > 0;
    in_range(path_, section_ + "." + o.key, v, r.lo, wider ? r.load_hi : r.hi, r.lo_open, r.hi_open && !wider);
  }
  void real_f32(double& v, double d, const Opt& o, RealRange r) override { real(v, d, o, r); }
  void integer(int& v, int, const Opt& o, IntRange r) override {
    const std::string key = "'" + section_ + "." + o.key + "' is " + std::to_string(v) + "; must be ";
    if (r.hi >= kMaxCount) {  // a count: no upper bound worth naming below the cap
      if (v < r.lo) fail(path_, key + ">= " + std::to_string(r.lo));
      if (v > r.hi) fail(path_, key + "<= " + std::to_string(r.hi));
    } else if (v < r.lo || v > r.hi) {
      fail(path_, key + "in [" + std::to_string(r.lo) + ", " + std::to_string(r.hi) + "]");
    }
  }
  void flag(bool&, bool, const Opt&) override {}
  void named_bool(bool&, bool, const Opt&, const char*, const char*) override {}

 private:
  const std::string& path_;
  std::string section_;
};

void check_spec(const QuantSpec& q, const std::string& name, const std::string& path) {
  if (!quant_bits_supported(q.bits))
    fail(path, "'" + name + ".bits' is " + std::to_string(q.bits) + "; supported: 2..8, or 16 (not quantized)");
  if (q.gran == Granularity::PerGroup && q.group <= 0)
    fail(path, "'" + name + ".group' is " + std::to_string(q.group) + "; granularity group needs a group size > 0");
  if (q.gran != Granularity::PerGroup && q.group != 0)
    fail(path, "'" + name + ".group' is " + std::to_string(q.group) + " but granularity is not group (must be 0)");
  in_range(path, name + ".clip_ratio", q.clip_ratio, 0, 1, true, false);
  in_range(path, name + ".mse_grid", q.mse_grid, 1, 10000, false, false);
  in_range(path, name + ".mse_maxshrink", q.mse_maxshrink, 0, 1, false, false);
  in_range(path, name + ".mse_norm", q.mse_norm, 0, 16, true, false);
}

// The kind Rotation::hadamard(n, ...) builds: a Hadamard matrix when one of order n is known.
std::string hadamard_kind(int n) {
  int p2, m;
  hadamard_factor(n, &p2, &m);
  return m == 0 ? "random_orthogonal" : "hadamard";
}

void check_group_divides(const QuantSpec& q, const std::string& name, const std::vector<std::pair<const char*, int>>& dims,
                         const std::string& path) {
  if (q.gran != Granularity::PerGroup) return;
  for (auto& [what, d] : dims)
    if (d % q.group != 0)
      fail(path, "'" + name + ".group' is " + std::to_string(q.group) + ", which does not divide " + what + " " +
                     std::to_string(d) + " (config.json)");
}

void check_recipe_against_spec(const Recipe& r, const ModelSpec& s, const std::string& path) {
  const std::vector<std::pair<const char*, int>> lin_in = {{"hidden_size", s.hidden}, {"the attention width", s.q_dim()},
                                                           {"intermediate_size", s.ffn}};
  check_group_divides(r.w, "weights", lin_in, path);
  check_group_divides(r.a, "activations", lin_in, path);
  check_group_divides(r.k, "k_cache", {{"the K/V width", s.kv_dim()}}, path);
  check_group_divides(r.v, "v_cache", {{"the K/V width", s.kv_dim()}}, path);
  if (r.seqlen > s.max_pos)
    fail(path, "'calibration.seqlen' is " + std::to_string(r.seqlen) + ", beyond max_position_embeddings " +
                   std::to_string(s.max_pos) + " (config.json)");
  // The online rotations are rebuilt from (kind, seed); they must be the ones the writer fused.
  auto online = [&](bool on, const std::string& kind, uint64_t seed, const char* which, int n, uint64_t offset) {
    if (!on) return;
    const std::string want = hadamard_kind(n);
    if (kind != want)
      fail(path, std::string("'rotations.") + which + "_kind' is " + quote(kind) + " but a rotation of size " +
                     std::to_string(n) + " is built as '" + want + "'");
    if (seed != r.seed + offset)
      fail(path, std::string("'rotations.") + which + "_seed' is " + std::to_string(seed) + "; the writer derives " +
                     std::to_string(r.seed + offset) + " (rotations.seed + " + std::to_string(offset) + ")");
  };
  online(r.r3, r.r3_kind, r.r3_seed, "r3", s.head_dim, 3);
  if (r.r4_block > 0) {
    if (!r.r4) fail(path, "'r4.block' is " + std::to_string(r.r4_block) + " but 'rotations.r4' is false");
    for (int n : s.down_widths())
      if ((r.r4_block & (r.r4_block - 1)) != 0 || n % r.r4_block != 0)
        fail(path, "'r4.block' is " + std::to_string(r.r4_block) + "; must be a power of two dividing the down_proj input width " +
                       std::to_string(n));
    if (r.r4_kind != "hadamard")
      fail(path, "'rotations.r4_kind' is " + quote(r.r4_kind) + " but a block R4 ('r4.block') is built as 'hadamard'");
  }
  if (r.r4_block == 0) online(r.r4, r.r4_kind, r.r4_seed, "r4", s.down_widths()[0], 4);
  else online(r.r4, "hadamard", r.r4_seed, "r4", 1, 4);  // the seed is still the writer's
}

const char* const kSites[] = {"attn_in", "o_in", "mlp_in", "down_in"};
const Site kSiteIds[] = {Site::AttnIn, Site::OIn, Site::MlpIn, Site::DownIn};

int site_width(const ModelSpec& s, Site site) {
  return site == Site::DownIn ? s.down_widths()[0] : site == Site::OIn ? s.q_dim() : s.hidden;
}

// The kurtail.* tensors (name without the prefix -> shape) the recipe's method writes.
std::map<std::string, std::vector<int64_t>> expected_online_tensors(const Recipe& r, const ModelSpec& s) {
  std::map<std::string, std::vector<int64_t>> e;
  for (int l = 0; l < s.n_layers; l++)
    for (Site site : kSiteIds) {
      const int64_t n = site_width(s, site);
      if (r.method == "duquant") {
        e[site_tensor_name("site", l, site, "smooth")] = {n};
        const int64_t b = duquant_block_size((int)n, r.dq_block);
        if (b >= 2) {
          e[site_tensor_name("site", l, site, "rot_a")] = {b, b};
          e[site_tensor_name("site", l, site, "rot_b")] = {b, b};
          if (r.dq_permute && n / b > 1) e[site_tensor_name("site", l, site, "perm")] = {n};
        }
      } else if (r.method == "crossquant") {
        e[site_tensor_name("cq", l, site, "colmax")] = {n};
      }
    }
  if (r1_runs_online(r, s) && r.method == "kurtail" && r.kurtail.learn_r1) e[kOnlineR1Tensor] = {s.hidden, s.hidden};
  return e;
}

// max |R^T R - I| in float64 (one SYRK of the b x b matrix).
double orthogonality_error(const Tensor& t) {
  const int b = (int)t.dim(0);
  std::vector<double> a(t.data.begin(), t.data.end()), c((size_t)b * b, 0.0);
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, b, b, 1.0, a.data(), b, 0.0, c.data(), b);
  double err = 0;
  for (int i = 0; i < b; i++)
    for (int j = i; j < b; j++) err = std::max(err, std::fabs(c[(size_t)i * b + j] - (i == j ? 1.0 : 0.0)));
  return err;
}

void check_online_tensor(const std::string& name, const Tensor& t, const std::string& file) {
  const std::string full = "kurtail." + name;
  check_finite(t, file, full);
  const std::string what = name.substr(name.rfind('.') + 1);
  if (what == "smooth") {
    for (size_t i = 0; i < t.data.size(); i++)
      if (!(t.data[i] > 0))
        fail(file, "tensor " + quote(full) + " has scale " + fmt_num(t.data[i]) + " at element " + std::to_string(i) +
                       "; smoothing scales must be > 0");
  } else if (what == "colmax") {
    for (size_t i = 0; i < t.data.size(); i++)
      if (t.data[i] < 0)
        fail(file, "tensor " + quote(full) + " has column maximum " + fmt_num(t.data[i]) + " at element " +
                       std::to_string(i) + "; column maxima are >= 0");
  } else if (what == "rot_a" || what == "rot_b" || name == kOnlineR1Tensor) {
    const double err = orthogonality_error(t);
    if (!(err <= 1e-4)) fail(file, "tensor " + quote(full) + " is not orthogonal (max |R^T R - I| = " + fmt_num(err) + ")");
  } else if (what == "perm") {
    const int64_t n = t.numel();
    std::vector<char> seen(n, 0);
    for (int64_t i = 0; i < n; i++) {
      const float v = t.data[i];
      if (!(v >= 0 && v < (float)n && v == std::floor(v)) || seen[(int64_t)v])
        fail(file, "tensor " + quote(full) + " is not a permutation of 0.." + std::to_string(n - 1) + " (element " +
                       std::to_string(i) + " is " + fmt_num(v) + ")");
      seen[(int64_t)v] = 1;
    }
  }
}

bool parse_layer_index(const std::string& s, int n_layers, int* l) {
  if (s.empty() || s.size() > 6 || (s.size() > 1 && s[0] == '0')) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *l = v;
  return v < n_layers;
}

// The linears of a layer, from the architecture's table: HF suffix, shape and bias.
struct LinearDesc {
  std::string name;  // after "model.layers.N."
  int64_t out, in;
  bool bias;
  bool routing;   // router / shared-expert gate: never quantized
  bool packable;  // false: part of a fused tensor whose split would cut packed tiles (fused_packable)
};

// Every linear of a layer, each expert's once.
std::vector<LinearDesc> linears(const ModelSpec& s) {
  std::vector<LinearDesc> v;
  const ArchTable& t = arch_table(s);
  for (const TensorRow& r : t.layer)
    if (!r.is_norm()) {
      const std::vector<int64_t> shape = row_shape(r, s);
      const FusedRow* fr = fused_of(t, r.field);
      for (int e = 0; e < (r.per_expert() ? s.n_experts : 1); e++)
        v.push_back({hf_suffix(r, r.per_expert() ? e : -1), shape[0], shape[1], row_has_bias(r, s), r.routing(),
                     !fr || fused_packable(*fr, s)});
    }
  return v;
}

// A tensor name a quantized model of spec `s` can hold (kurtail.* is checked separately).
bool known_tensor(const std::string& n, const ModelSpec& s) {
  const ArchTable& t = arch_table(s);
  for (const GlobalRow& g : t.globals)
    if (n == g.hf) return true;
  if (const std::string head = lm_head_base(s); !head.empty())
    for (const char* suf : {".qweight", ".qscale", ".qbits"})
      if (n == head + suf) return true;
  const std::string pre = kHfLayerPrefix;
  if (n.compare(0, pre.size(), pre) != 0) return false;
  const size_t dot = n.find('.', pre.size());
  int l;
  if (dot == std::string::npos || !parse_layer_index(n.substr(pre.size(), dot - pre.size()), s.n_layers, &l)) return false;
  const std::string rest = n.substr(dot + 1);
  for (const TensorRow& r : t.layer)
    if (r.is_norm() && rest == std::string(r.hf) + ".weight") return true;
  for (const LinearDesc& d : linears(s))
    for (const char* suf : {".weight", ".qweight", ".qscale", ".qbits", ".bias"})
      if (rest == d.name + suf) return std::string(suf) == ".weight" || (std::string(suf) == ".bias" ? d.bias : !d.routing);
  return false;
}

}  // namespace

bool quant_bits_supported(int bits) { return (bits >= 2 && bits <= 8) || bits == 16; }

void validate_recipe(const Recipe& r, const std::string& path) {
  Recipe implied;
  try {
    implied.set_method(r.method);
  } catch (const Error&) {
    fail(path, "unknown method " + quote(r.method) + " (available: " + Recipe::method_list() + ")");
  }
  if (r.weight_algo != "rtn" && r.weight_algo != "gptq")
    fail(path, "'weight_algo' is " + quote(r.weight_algo) + "; must be rtn or gptq");
  check_spec(r.w, "weights", path);
  check_spec(r.a, "activations", path);
  check_spec(r.k, "k_cache", path);
  check_spec(r.v, "v_cache", path);
  if (r.lm_head_bits != 0 && !(r.lm_head_bits >= 2 && r.lm_head_bits <= 8))
    fail(path, "'lm_head_bits' is " + std::to_string(r.lm_head_bits) + "; must be 0 (as the weights) or 2..8");
  if (r.lm_head_bits != 0 && !r.quant_lm_head)
    fail(path, "'lm_head_bits' is " + std::to_string(r.lm_head_bits) + " but 'quant_lm_head' is false");
  const std::pair<const char*, std::pair<bool, bool>> rots[] = {
      {"r1", {r.r1, implied.r1}}, {"r2", {r.r2, implied.r2}}, {"r3", {r.r3, implied.r3}}, {"r4", {r.r4, implied.r4}}};
  for (auto& [name, on] : rots)
    if (on.first && !on.second)
      fail(path, std::string("'rotations.") + name + "' is true but method " + quote(r.method) + " has no " + name);
  for (auto [key, kind] : {std::pair{"r3_kind", &r.r3_kind}, std::pair{"r4_kind", &r.r4_kind}})
    if (*kind != "hadamard" && *kind != "random_orthogonal")
      fail(path, std::string("'rotations.") + key + "' is " + quote(*kind) + "; must be hadamard or random_orthogonal");
  // Every method option against the range declared with it (quant/options.h): the sections
  // every recipe carries, and the method's own.
  for (const OptionSection* sec : option_sections())
    if (sec->in_every_recipe || method_has_section(r.method, *sec)) {
      CheckRanges check(path, sec->key);
      sec->visit(const_cast<Recipe&>(r), check);  // CheckRanges only reads: visit takes Recipe& for the reader
    }
  if (r.online_had_inputs != implied.online_had_inputs)
    fail(path, std::string("'smoothing.online_hadamard_inputs' is ") + (r.online_had_inputs ? "true" : "false") +
                   " but method " + quote(r.method) + (implied.online_had_inputs ? " has" : " has no") +
                   " online input Hadamards");
  if (r.crossquant != (r.method == "crossquant"))
    fail(path, std::string("'crossquant.enabled' is ") + (r.crossquant ? "true" : "false") + " but method is " +
                   quote(r.method));
  if (r.nsamples < 0) fail(path, "'calibration.nsamples' is " + std::to_string(r.nsamples) + "; must be >= 0");
  if (r.seqlen < 0) fail(path, "'calibration.seqlen' is " + std::to_string(r.seqlen) + "; must be >= 0");
}

Recipe load_validated_recipe(const std::string& dir, const ModelSpec& s) {
  const std::string rp = join_path(dir, "recipe.json");
  Recipe r = Recipe::from_json(read_file(rp, kMaxJsonBytes), rp);
  check_recipe_against_spec(r, s, rp);

  // a fused checkpoint (Phi-3) is checked as its parts, as the model loads it
  const std::shared_ptr<TensorSource> stp = unfused_source(std::make_shared<SafetensorsDir>(dir), s);
  const TensorSource& st = *stp;
  std::string sf = join_path(dir, "model.safetensors");
  // kurtail quantize writes model.safetensors (or, streaming, one shard per layer) with its format
  // and method in each file's __metadata__.
  std::string format;
  const SafetensorsDir files(dir);
  if (!file_exists(sf)) sf = st.describe();
  for (const SafetensorsFile* f : files.files()) {
    const auto& md = f->metadata();
    auto get = [&](const char* k) {
      auto it = md.find(k);
      if (it == md.end()) fail(f->describe(), std::string("__metadata__ has no '") + k + "' (not written by kurtail quantize)");
      return it->second;
    };
    const std::string fmt = get("kurtail_format");
    if (fmt != "fakequant-1" && fmt != "packed-1")
      fail(f->describe(), "__metadata__ kurtail_format is " + quote(fmt) + "; must be fakequant-1 or packed-1");
    if (!format.empty() && fmt != format)
      fail(f->describe(), "__metadata__ kurtail_format is " + quote(fmt) + " but another shard says " + quote(format));
    format = fmt;
    const std::string method = get("kurtail_method");
    if (method != r.method)
      fail(f->describe(), "__metadata__ kurtail_method is " + quote(method) + " but recipe.json says " + quote(r.method));
  }

  // Every tensor is one the model or the recipe uses.
  std::set<std::string> online;
  for (const std::string& n : st.names()) {
    if (n.rfind("kurtail.", 0) == 0) online.insert(n.substr(8));
    else if (!known_tensor(n, s))
      fail(st.info(n).file, "tensor " + quote(n) + " is not part of a kurtail quantized model of this config.json");
  }

  // kurtail.*: exactly what the method writes, with exact shapes and valid values.
  const auto expected = expected_online_tensors(r, s);
  for (const std::string& n : online)
    if (!expected.count(n))
      fail(st.info("kurtail." + n).file, "tensor " + quote("kurtail." + n) + " is not used by the recipe (method " +
                                             quote(r.method) + ")");
  for (auto& [n, shape] : expected)
    if (!online.count(n)) fail(sf, "missing tensor " + quote("kurtail." + n) + " (method " + quote(r.method) + " needs it)");
  for (auto& [n, _] : r.tensors)
    if (!expected.count(n)) fail(rp, "'tensors' lists " + quote(n) + ", which method " + quote(r.method) + " does not have");
  for (auto& [n, _] : expected)
    if (!r.tensors.count(n)) fail(rp, "'tensors' does not list " + quote(n) + " (model.safetensors has it)");
  for (auto& [n, shape] : expected) {
    check_interrupted();
    const TensorInfo& ti = st.info("kurtail." + n);
    if (ti.dtype != DType::F32) fail(ti.file, "tensor " + quote("kurtail." + n) + " has dtype " + dtype_name(ti.dtype) + "; must be F32");
    if (ti.shape != shape)
      fail(ti.file, "tensor " + quote("kurtail." + n) + " has shape " + shape_str(ti.shape) + "; the recipe implies " +
                        shape_str(shape));
    Tensor t = to_f32(ti);
    check_online_tensor(n, t, ti.file);
    r.tensors[n] = std::move(t);
  }

  // Per linear: scales and bits (values checked in check_linear_quant) agree with the recipe.
  // The weight quantizer records integer-grid scales exactly for weights with a packed type.
  auto check_linear = [&](const std::string& name, int64_t out, int64_t in, const QuantSpec& ws, const std::string& key,
                          const std::string& bits_key, bool packable) {
    const bool recs = wtype_for(ws).has_value();
    LinearQuant q = check_linear_quant(st, name, out, in);
    if (!q.qbits) {
      if (recs) fail(sf, "missing tensor " + quote(name + ".qscale") + " (" + key + " " + ws.describe() + " record scales)");
      return;
    }
    const TensorInfo& si = st.info(name + ".qscale");
    if (!recs) fail(si.file, "tensor " + quote(name + ".qscale") + " is not used by the recipe (" + key + " " + ws.describe() + ")");
    if (q.qbits != ws.bits)
      fail(st.info(name + ".qbits").file, "tensor " + quote(name + ".qbits") + " is " + std::to_string(q.qbits) +
                                               " but recipe.json " + bits_key + " is " + std::to_string(ws.bits));
    const int64_t G = ws.gran == Granularity::PerGroup ? in / ws.group : 1;
    if (si.shape[1] != G)
      fail(si.file, "tensor " + quote(name + ".qscale") + " has shape " + shape_str(si.shape) + " but recipe.json " + key +
                        " (" + ws.describe() + ") imply [" + std::to_string(out) + ", " + std::to_string(G) + "]");
    if ((si.dtype == DType::F16) != ws.scale_f16)
      fail(si.file, "tensor " + quote(name + ".qscale") + " is " + dtype_name(si.dtype) + " but recipe.json weights.scale_dtype is " +
                        (ws.scale_f16 ? "f16" : "f32"));
    if (!format.empty()) {
      const bool want_packed = format == "packed-1" && packable && (G == 1 || (in / G) % 8 == 0);
      if (want_packed != st.has(name + ".qweight"))
        fail(sf, want_packed ? "missing tensor " + quote(name + ".qweight") + " (kurtail_format packed-1 packs this linear)"
                             : "tensor " + quote(name + ".qweight") + " in a kurtail_format " + format + " model");
    }
  };
  for (int l = 0; l < s.n_layers; l++) {
    check_interrupted();
    for (const LinearDesc& d : linears(s)) {
      if (d.routing) continue;  // full precision; known_tensor refused any scales for it
      check_linear(kHfLayerPrefix + std::to_string(l) + "." + d.name, d.out, d.in, r.w, "weights", "weights.bits", d.packable);
    }
  }
  // The head: scales exactly when the recipe quantizes it (quant_lm_head, lm_head_bits).
  if (const std::string base = lm_head_base(s); !base.empty() && (st.has(base + ".weight") || st.has(base + ".qweight"))) {
    QuantSpec none;  // records nothing
    check_linear(base, s.vocab, s.hidden, r.quant_lm_head ? r.lm_head_w() : none, "lm_head weights",
                 r.lm_head_bits ? "lm_head_bits" : "weights.bits", true);
  }
  return r;
}

void attach_online_r1(Model& m, const Recipe& r) {
  if (!r1_runs_online(r, m.spec)) return;
  auto it = r.tensors.find(kOnlineR1Tensor);  // validated: [hidden, hidden], orthogonal
  Rotation r1 = it != r.tensors.end() ? Rotation::from_matrix(it->second)
                                      : Rotation::hadamard(m.spec.hidden, r.r1_random_signs, r.seed);
  m.set_post_norm_r1(std::make_shared<const RotationRows>(std::make_shared<const Rotation>(std::move(r1))));
}

std::unique_ptr<Model> open_model(const std::string& path, int resident, const std::string& tokenizer_path) {
  return open_model(path, resident, tokenizer_path, nullptr);
}

std::unique_ptr<Model> open_model(const std::string& path, int resident, const std::string& tokenizer_path,
                                  std::optional<Recipe>* recipe, bool defer_globals) {
  // vLLM's format (kurtail export --format compressed-tensors, or another writer's checkpoint)
  if (is_compressed_tensors_dir(path)) return open_compressed_tensors(path, tokenizer_path, recipe);
  const std::string cfg = join_path(path, "config.json");
  const bool has_recipe = is_directory(path) && file_exists(join_path(path, "recipe.json"));
  std::optional<Recipe> r;
  if (has_recipe && file_exists(cfg)) r = load_validated_recipe(path, read_hf_config(cfg));
  auto m = Model::open(path, resident, tokenizer_path, defer_globals);
  // (a directory with recipe.json but no config.json: validated against what Model::open read)
  if (has_recipe && !r) r = load_validated_recipe(path, m->spec);
  if (r) attach_online_r1(*m, *r);  // whoever opens it, never without its online R1
  if (recipe) *recipe = std::move(r);
  return m;
}

}  // namespace kt
