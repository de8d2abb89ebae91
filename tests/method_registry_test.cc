// quant/methods.h is the only list of method names: the recipe, the CLI and `info` read it.
#include <gtest/gtest.h>

#include "quant/methods.h"
#include "quant/recipe.h"
#include "test_util.h"
#include "util/error.h"

namespace kt {
namespace {

TEST(MethodRegistry, RecipeAndCliReadTheRegistry) {
  ASSERT_GE(methods().size(), 8u);
  for (const MethodInfo& m : methods()) {
    Recipe r;
    r.set_method(m.name);
    EXPECT_EQ(r.method, m.name);
    EXPECT_EQ(r.r1, m.r1) << m.name;
    EXPECT_EQ(r.r2, m.r2) << m.name;
    EXPECT_EQ(r.r3, m.r3) << m.name;
    EXPECT_EQ(r.r4, m.r4) << m.name;
    EXPECT_EQ(r.online_had_inputs, m.online_had_inputs) << m.name;
    EXPECT_EQ(find_method(m.name), &m);
  }
  EXPECT_EQ(find_method("nosuch"), nullptr);
  Recipe r;
  EXPECT_THROW(r.set_method("nosuch"), Error);
  EXPECT_EQ(std::string(Recipe::method_list()), method_names());
  // quantize --help and analyze --help show exactly the registry's names.
  for (const char* sub : {"quantize", "analyze"}) {
    auto h = test::run_cli(std::string(sub) + " --help");
    ASSERT_EQ(h.code, 0) << h.err;
    std::string names;
    for (const MethodInfo& m : methods()) names += (names.empty() ? "" : "|") + std::string(m.name);
    EXPECT_NE(h.out.find(names), std::string::npos) << sub << " --help does not list " << names << ":\n" << h.out;
  }
}

}  // namespace
}  // namespace kt
