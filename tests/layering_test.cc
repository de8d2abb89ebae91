// The house rule of docs/DESIGN.md: src/ is layered and no #include runs upward.
//   util -> core -> io -> kernels -> model -> transform -> train -> quant -> {eval, runtime, export} -> cli
// A file may include its own directory and any lower layer; eval, runtime and export are
// siblings and include none of each other. The test prints the include graph it found.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>

namespace {

namespace fs = std::filesystem;

const std::map<std::string, int>& ranks() {
  static const std::map<std::string, int> r = {{"util", 0},  {"core", 1},      {"io", 2},   {"kernels", 3},
                                               {"model", 4}, {"transform", 5}, {"train", 6}, {"quant", 7}, {"eval", 8},
                                               {"runtime", 8}, {"export", 8},   {"cli", 9}};
  return r;
}

TEST(Layering, NoIncludeRunsUpward) {
  const fs::path src = fs::path(KURTAIL_SOURCE_DIR) / "src";
  const std::regex inc(R"(^\s*#\s*include\s+"([a-z_]+)/[^"]+")");
  std::map<std::pair<std::string, std::string>, int> edges;  // (from, to) -> count
  int files = 0;
  for (auto& e : fs::recursive_directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const std::string ext = e.path().extension().string();
    if (ext != ".h" && ext != ".cc") continue;
    const std::string dir = fs::relative(e.path(), src).begin()->string();
    ASSERT_TRUE(ranks().count(dir)) << "src/" << dir << "/ is not a known layer: add it to docs/DESIGN.md and this test";
    files++;
    std::ifstream f(e.path());
    int n = 0;
    for (std::string line; std::getline(f, line);) {
      n++;
      std::smatch m;
      if (!std::regex_search(line, m, inc)) continue;
      const std::string to = m[1];
      ASSERT_TRUE(ranks().count(to)) << e.path() << ":" << n << " includes an unknown layer " << to;
      if (to == dir) continue;
      edges[{dir, to}]++;
      EXPECT_LT(ranks().at(to), ranks().at(dir))
          << e.path().string() << ":" << n << ": " << dir << " includes " << to
          << (ranks().at(to) == ranks().at(dir) ? " (siblings)" : " (upward)");
    }
  }
  EXPECT_GT(files, 50);
  std::string graph;
  for (auto& [k, c] : edges) graph += "  " + k.first + " -> " + k.second + " (" + std::to_string(c) + ")\n";
  std::printf("include graph of src/ (directory -> directory, number of #include lines):\n%s", graph.c_str());
}

}  // namespace
