#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace kt::test {

CmdResult run_cli(const std::string& args, const std::string& prefix) {
  std::string dir = temp_dir("cli");
  std::string cmd = std::string("export KURTAIL_DATA='") + data() + "'; " + prefix + " " + KURTAIL_BIN + " " + args + " >" + dir + "/out 2>" +
                    dir + "/err";
  int st = std::system(cmd.c_str());
  CmdResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.out = read_file(dir + "/out", SIZE_MAX);
  r.err = read_file(dir + "/err", SIZE_MAX);
  std::system(("rm -rf '" + dir + "'").c_str());
  return r;
}

void expect_documented_error(const CmdResult& r, const std::string& must_contain, int code) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_EQ(r.err.rfind("kurtail: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  static const std::string doc = read_file(std::string(KURTAIL_SOURCE_DIR) + "/docs/ERRORS.md", SIZE_MAX);
  EXPECT_NE(doc.find(must_contain), std::string::npos) << "docs/ERRORS.md does not list: " << must_contain;
}

QuantizeOptions quantize_for_test(Model& m, const std::string& method, int wbits, int abits, int kvbits) {
  QuantizeOptions o;
  o.progress = false;
  o.recipe.set_method(method);
  o.recipe.set_bits(wbits, abits, kvbits, m.spec.head_dim);
  quantize_model(m, o);
  return o;
}

namespace {
std::vector<std::string>& made_temp_dirs() {
  static std::vector<std::string> dirs;
  return dirs;
}
}  // namespace

std::string temp_dir(const std::string& tag) {
  std::string t = "/tmp/kurtail_test_" + tag + "_XXXXXX";
  std::vector<char> buf(t.begin(), t.end());
  buf.push_back(0);
  char* p = mkdtemp(buf.data());
  if (!p) return std::string("/tmp");
  made_temp_dirs().push_back(p);
  return std::string(p);
}

void remove_temp_dirs() {
  if (std::getenv("KURTAIL_KEEP_TEST_DIRS")) return;
  for (const auto& d : made_temp_dirs()) {
    std::error_code ec;
    // a test may have left a subdirectory unwritable (permission tests): make it removable
    for (auto it = std::filesystem::recursive_directory_iterator(d, ec); !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_directory(ec)) std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(d, ec);
  }
  made_temp_dirs().clear();
}

}  // namespace kt::test
