#include "quant/session.h"

#include "quant/validate_model.h"

namespace kt {

Session::Session(const Model& m) : model_(std::shared_ptr<const Model>(), &m) {}  // aliasing: owns nothing

Session::Session(std::shared_ptr<const Model> m) : model_(std::move(m)) {}

Session::Session(std::shared_ptr<const Model> m, const Recipe& r, const OnlineCaps& caps)
    : Session(m, r, plan_online(r, m->spec, caps)) {}

Session::Session(const Model& m, const Recipe& r, const OnlineCaps& caps)
    : Session(std::shared_ptr<const Model>(std::shared_ptr<const Model>(), &m), r, caps) {}

Session::Session(std::shared_ptr<const Model> m, const Recipe& r, std::shared_ptr<const OnlinePlan> plan)
    : model_(std::move(m)), recipe_(std::make_shared<const Recipe>(r)), plan_(std::move(plan)) {
  // The plan was created non-const (plan_online); the Hooks interface is not const, the plan's
  // on_activation only reads it.
  hooks_ = const_cast<OnlinePlan*>(plan_.get());
  if (plan_->cache_quantizes_kv()) {
    kv_k_ = r.k;
    kv_v_ = r.v;
  }
}

KVCache Session::new_cache(int nseq, int max_len) const {
  KVCache c = kv_k_.enabled() ? KVCache(model_->spec, nseq, max_len, kv_k_, kv_v_) : KVCache(model_->spec, nseq, max_len);
  c.k_dot = k_dot_;
  return c;
}

std::unique_ptr<KVCache> Session::new_quantized_cache(int nseq, int max_len) const {
  if (!kv_k_.enabled()) return nullptr;
  auto c = std::make_unique<KVCache>(model_->spec, nseq, max_len, kv_k_, kv_v_);
  c->k_dot = k_dot_;
  return c;
}

Session Session::observed(Hooks* h) const {
  Session s = *this;
  s.hooks_ = h;
  return s;
}

Session open_session(const std::string& path, int resident, const std::string& tokenizer_path, const OnlineCaps& caps) {
  std::optional<Recipe> r;
  std::shared_ptr<const Model> m = open_model(path, resident, tokenizer_path, &r);
  if (!r) return Session(std::move(m));
  return Session(std::move(m), *r, caps);
}

}  // namespace kt
