#include "cli/recipe_flags.h"

#include "util/error.h"

namespace kt::cli {

class FlagVisitor : public OptionVisitor {
 public:
  explicit FlagVisitor(RecipeFlags& f) : f_(f) {}
  void real(double& v, double, const Opt& o, RealRange r) override {
    if (!o.flag) return;
    real_option(f_.c_, o.flag, v, o.help, r.lo, r.hi, r.lo_open, r.hi_open)->capture_default_str();
    f_.flags_.push_back(o.flag);
  }
  void real_f32(double& v, double, const Opt& o, RealRange r) override {
    if (!o.flag) return;
    float& f = f_.f32_.emplace_back((float)v);
    real_option(f_.c_, o.flag, f, o.help, r.lo, r.hi, r.lo_open, r.hi_open)->capture_default_str();
    f_.commits_.push_back([&v, &f] { v = f; });
    f_.flags_.push_back(o.flag);
  }
  void integer(int& v, int, const Opt& o, IntRange r) override {
    if (!o.flag) return;
    int_option(f_.c_, o.flag, v, o.help, r.lo, r.hi, r.zero_default)->capture_default_str();
    f_.flags_.push_back(o.flag);
  }
  void flag(bool& v, bool d, const Opt& o) override {
    if (!o.flag) return;
    // A flag can only switch an option on.
    if (d) fail(std::string(o.flag) + ": a flag whose default is true cannot be switched off");
    f_.c_->add_flag(o.flag, v, o.help);
    f_.flags_.push_back(o.flag);
  }
  void named_bool(bool& v, bool, const Opt& o, const char* if_true, const char* if_false) override {
    if (!o.flag) return;
    std::string& s = f_.names_.emplace_back(v ? if_true : if_false);
    choice_option(f_.c_, o.flag, s, o.help, {if_true, if_false})->capture_default_str();
    const std::string t = if_true;
    f_.commits_.push_back([&v, &s, t] { v = s == t; });
    f_.flags_.push_back(o.flag);
  }

 private:
  RecipeFlags& f_;
};

void RecipeFlags::add(const OptionSection& s) {
  FlagVisitor v(*this);
  s.visit(r_, v);
}

void RecipeFlags::commit() const {
  for (const auto& c : commits_) c();
}

}  // namespace kt::cli
