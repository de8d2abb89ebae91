#include "quant/online_plan.h"

#include <map>
#include <string>

#include "transform/fuse.h"
#include "util/error.h"

namespace kt {

namespace {

// "kind.L.site.what" (recipe tensor names, site_tensor_name).
bool parse_site_tensor(const std::string& name, std::string* kind, int* layer, Site* site, std::string* what) {
  size_t a = name.find('.'), b = name.find('.', a + 1), c = name.find('.', b + 1);
  if (a == std::string::npos || b == std::string::npos || c == std::string::npos) return false;
  *kind = name.substr(0, a);
  try {
    *layer = std::stoi(name.substr(a + 1, b - a - 1));
  } catch (...) {
    return false;
  }
  std::string sn = name.substr(b + 1, c - b - 1);
  for (int i = 0; i < kNumSites; i++)
    if (sn == site_name((Site)i)) {
      *site = (Site)i;
      *what = name.substr(c + 1);
      return true;
    }
  return false;
}

Rotation make_rotation(const std::string& kind, int n, uint64_t seed) {
  return kind == "random_orthogonal" ? Rotation::random_orthogonal(n, seed) : Rotation::hadamard(n, false, seed);
}

bool is_linear_input(Site s) { return s == Site::AttnIn || s == Site::OIn || s == Site::MlpIn || s == Site::DownIn; }

}  // namespace

const char* quant_where_name(QuantWhere w) {
  switch (w) {
    case QuantWhere::None: return "none";
    case QuantWhere::Hook: return "hook";
    case QuantWhere::LinearInput: return "linear input";
    case QuantWhere::CacheWrite: return "cache write";
  }
  return "?";
}

OnlinePlan::OnlinePlan(const Recipe& r, const ModelSpec& s, const OnlineCaps& caps) : s_(s), caps_(caps) {
  r_ = r;
  r_.tensors.clear();
  const size_t L = (size_t)s.n_layers + 1;  // + the lm_head input
  site_tf_.resize(L);
  cq_.resize(L);
  sites_.resize(L);
  // The per-layer tensors: site transforms (all parts of one site gathered, then validated) and
  // CrossQuant column maxima.
  std::map<std::pair<int, int>, SiteTransform> tf;
  for (auto& [name, t] : r.tensors) {
    if (name == kOnlineR1Tensor) continue;  // the model's post-norm R1 (open_model attaches it)
    std::string kind, what;
    int layer;
    Site site;
    if (!parse_site_tensor(name, &kind, &layer, &site, &what) || layer < 0 || layer >= s.n_layers)
      fail("recipe tensor '" + name + "' has an unknown name");
    if (kind == "cq" && what == "colmax") {
      cq_[layer][(int)site] = std::make_unique<const std::vector<float>>(t.data);
      continue;
    }
    if (kind != "site") fail("recipe tensor '" + name + "' has an unknown kind");
    SiteTransform& st = tf[{layer, (int)site}];
    st.n = (int)(site == Site::DownIn ? s.down_widths()[0] : site == Site::OIn ? s.q_dim() : s.hidden);
    if (what == "smooth") st.smooth = t.data;
    else if (what == "rot_a") st.rot_a = t;
    else if (what == "rot_b") st.rot_b = t;
    else if (what == "perm") st.perm.assign(t.data.begin(), t.data.end());
    else fail("recipe tensor '" + name + "' has an unknown part");
  }
  for (auto& [k, st] : tf) {
    st.validate("recipe site transform " + std::to_string(k.first) + "." + site_name((Site)k.second));
    site_tf_[k.first][k.second] = std::make_unique<const SiteTransform>(std::move(st));
  }
  if (r.online_had_inputs) rin_ = Rotation::hadamard(s.hidden, false, r.seed + 5);
  if (r.r3) {
    r3_ = std::make_shared<const Rotation>(make_rotation(r.r3_kind, s.head_dim, r.r3_seed));
    r3_rows_ = std::make_shared<const RotationRows>(r3_);
  }
  if (r.r4) {
    // the recorded kind is the first width's; every width's R4 is r4_rotation (the full
    // Hadamard(n, false, seed), which make_rotation rebuilds for a kind that matches its size, or
    // the block-diagonal Sylvester one: the same matrix the pipeline fused into down_proj)
    const std::vector<int> widths = s.down_widths();
    for (size_t i = 0; i < widths.size(); i++)
      r4_.emplace_back(widths[i], std::make_shared<const Rotation>(
                                      i == 0 && r.r4_block == 0 ? make_rotation(r.r4_kind, widths[i], r.r4_seed)
                                                                : r4_rotation(r, widths[i])));
  }
  // R3 runs before any site transform of K; moving it into the cache write would swap the two.
  r3_in_kv_cache_ = r.r3 && caps.cache_quantizes_kv && caps.cache_applies_r3 &&
                    !has_site_transform(Site::K);
  r4_in_down_ = r.r4 && caps.linears_quantize_inputs && caps.down_linears_apply_r4;
  compile_all();
}

const Rotation& OnlinePlan::r4_of(int width) const {
  for (const auto& [n, rot] : r4_)
    if (n == width) return *rot;
  fail("R4: no rotation for a down_proj input of width " + std::to_string(width));
}

std::shared_ptr<const RowTransform> OnlinePlan::r4_rows(int width) const {
  for (const auto& [n, rot] : r4_)
    if (n == width) return std::make_shared<const RotationRows>(rot);
  return nullptr;
}

bool OnlinePlan::has_site_transform(Site site) const {
  for (const auto& layer : site_tf_)
    if (layer[(int)site]) return true;
  return false;
}

void OnlinePlan::compile_all() {
  for (int l = 0; l < (int)sites_.size(); l++)
    for (int i = 0; i < kNumSites; i++) compile(l, (Site)i);
  for (int i = 0; i < kNumSites; i++) compile(-1, (Site)i);
}

// layer -1: outside_ (a layer index the model does not have: no per-layer parts).
void OnlinePlan::compile(int layer, Site site) {
  SitePlan p;
  using K = OnlineStep::Kind;
  if (r_.r3 && (site == Site::Q || (site == Site::K && !r3_in_kv_cache_))) p.steps.push_back({K::R3Heads, r3_.get()});
  const SiteTransform* tf = layer >= 0 ? site_tf_[layer][(int)site].get() : nullptr;
  if (tf) p.steps.push_back({K::SiteTransform, nullptr, tf});
  if (r_.online_had_inputs && (site == Site::AttnIn || site == Site::MlpIn)) p.steps.push_back({K::InputHadamard, &rin_});
  if (r_.r4 && site == Site::DownIn && !r4_in_down_) p.steps.push_back({K::R4});  // by the rows' width

  // The quantizer: activations (linear inputs, and the lm_head input when it is quantized) with
  // the recipe's activation quantizer, K/V with the cache quantizers; queries stay fp32.
  const std::vector<float>* colmax = layer >= 0 ? cq_[layer][(int)site].get() : nullptr;
  if (is_linear_input(site)) {
    p.quant = r_.a;
    p.where = caps_.linears_quantize_inputs ? QuantWhere::LinearInput : QuantWhere::Hook;
    if (r_.crossquant && colmax && p.where == QuantWhere::Hook) {
      p.crossquant_colmax = colmax;
      p.crossquant_alpha = r_.cq_alpha;
    }
  } else if (site == Site::K || site == Site::V) {
    p.quant = site == Site::K ? r_.k : r_.v;
    p.where = caps_.cache_quantizes_kv ? QuantWhere::CacheWrite : QuantWhere::Hook;
  } else if (site == Site::LmHeadIn && r_.quant_lm_head) {
    p.quant = r_.lm_head_a();
    p.where = caps_.head_quantizes_input ? QuantWhere::LinearInput : QuantWhere::Hook;
  }
  // A disabled quantizer (16 bits) does nothing wherever it would run.
  if (!caps_.quantize_activations || !p.quant.enabled()) {
    p.where = QuantWhere::None;
    p.crossquant_colmax = nullptr;
  }
  (layer >= 0 ? sites_[layer][(int)site] : outside_[(int)site]) = std::move(p);
}

const SitePlan& OnlinePlan::site(int layer, Site site) const {
  if (layer < 0 || layer >= (int)sites_.size()) return outside_[(int)site];
  return sites_[layer][(int)site];
}

void OnlinePlan::apply(int layer, Site site, float* x, int64_t rows, int64_t cols) const {
  const SitePlan& p = this->site(layer, site);
  for (const OnlineStep& st : p.steps) {
    switch (st.kind) {
      case OnlineStep::Kind::R3Heads: rotate_heads(x, rows, (int)(cols / s_.head_dim), *st.rotation); break;
      case OnlineStep::Kind::SiteTransform: st.site->apply(x, rows); break;
      case OnlineStep::Kind::InputHadamard: st.rotation->apply(x, rows); break;
      case OnlineStep::Kind::R4: r4_of((int)cols).apply(x, rows); break;
    }
  }
  if (p.where != QuantWhere::Hook) return;
  if (p.crossquant_colmax) crossquant_fake_quant_ref(x, rows, cols, p.crossquant_colmax->data(), p.crossquant_alpha, p.quant);
  else fake_quant_ref(x, rows, cols, p.quant);
}

std::shared_ptr<const OnlinePlan> plan_online(const Recipe& r, const ModelSpec& s, const OnlineCaps& caps) {
  return std::shared_ptr<const OnlinePlan>(new OnlinePlan(r, s, caps));
}

OnlinePlanBuilder::OnlinePlanBuilder(const Recipe& r, const ModelSpec& s) {
  OnlineCaps caps;
  caps.quantize_activations = false;
  plan_.reset(new OnlinePlan(r, s, caps));
}

void OnlinePlanBuilder::set_site_transform(int layer, Site site, SiteTransform t) {
  if (layer < 0 || layer >= plan_->s_.n_layers) fail("set_site_transform: layer " + std::to_string(layer) + " out of range");
  plan_->site_tf_[layer][(int)site] = std::make_unique<const SiteTransform>(std::move(t));
  plan_->compile(layer, site);
}

void OnlinePlanBuilder::set_crossquant_colmax(int layer, Site site, std::vector<float> c) {
  if (layer < 0 || layer >= plan_->s_.n_layers) fail("set_crossquant_colmax: layer " + std::to_string(layer) + " out of range");
  plan_->cq_[layer][(int)site] = std::make_unique<const std::vector<float>>(std::move(c));
  plan_->compile(layer, site);
}

}  // namespace kt
