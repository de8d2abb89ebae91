// Outputs (issue #13 classes 1-3): no shell reached from an option, exclusive temps that never
// follow a planted link, race-free publication, and --force replacing only kurtail's own
// outputs, never a directory holding an input. CLI tests run the real binary.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "test_util.h"
#include "util/error.h"
#include "util/file.h"
#include "util/output.h"
#include "export/quantized_model.h"

namespace kt {
namespace {

namespace fs = std::filesystem;

// The quickest real quantize: 1 layer, RTN, no calibration.
const std::string kQuick = "quantize -q --method rtn --truncate-layers 1 ";

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(OutputSafety, ShellMetacharactersInOutAreJustAName) {
  const std::string dir = test::temp_dir("shell");
  // Each of these reached `rm -rf '...'` through std::system before.
  const std::string in_dir = "cd '" + dir + "' && ";
  const std::string inject = "q';touch PWNED;'";
  auto r = test::run_cli(kQuick + "--out \"" + inject + "\"", in_dir);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(file_exists(dir + "/PWNED"));
  EXPECT_TRUE(is_directory(dir + "/" + inject));
  // Quoting out of the old rm -rf '...' to name another directory: it must survive.
  fs::create_directory(dir + "/somedir");
  write_file_atomic(dir + "/somedir/keep", "keep");
  const std::string evil = "x' 'somedir' '";
  r = test::run_cli(kQuick + "--out \"" + evil + "\"", in_dir);
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli(kQuick + "--force --out \"" + evil + "\"", in_dir);  // replacing goes through removal too
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_file(dir + "/somedir/keep"), "keep");
  fs::remove_all(dir);
}

TEST(OutputSafety, ProductHasNoShellAndCreatesFilesOnlyExclusively) {
  // Every file kurtail writes goes through util/output.cc; nothing else in src/ may create a
  // file (fopen for writing, ofstream, open with O_CREAT) or reach a shell.
  const std::regex shell(R"(\b(std::)?(system|popen|execl|execlp|execvp)\s*\()");
  const std::regex create(R"(std::ofstream|fopen\s*\([^)]*"[wa]|O_CREAT|O_TRUNC|\bcreat\s*\()");
  int files = 0;
  for (auto& e : fs::recursive_directory_iterator(std::string(KURTAIL_SOURCE_DIR) + "/src")) {
    if (!e.is_regular_file()) continue;
    const std::string p = e.path().string();
    std::ifstream f(p);
    std::string line;
    int n = 0;
    while (std::getline(f, line)) {
      n++;
      if (line.find("//") == 0) continue;
      EXPECT_FALSE(std::regex_search(line, shell)) << p << ":" << n << ": " << line;
      if (e.path().filename() != "output.cc") {
        EXPECT_FALSE(std::regex_search(line, create)) << p << ":" << n << " creates a file outside util/output.cc";
      }
    }
    files++;
  }
  EXPECT_GT(files, 50);
}

TEST(OutputSafety, ForceReplacesOnlyKurtailOutputs) {
  const std::string dir = test::temp_dir("force");
  // An ordinary directory (here: one holding a copy of the model, as the parent of --model).
  const std::string model = dir + "/models/tiny";
  fs::create_directories(model);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.model"})
    fs::copy_file(test::tinyllama() + "/" + f, model + "/" + f);
  auto r = test::run_cli(kQuick + "--model " + model + " --force --out " + dir + "/models");
  test::expect_documented_error(r, "contains the input");
  r = test::run_cli(kQuick + "--force --out " + dir + "/models");
  test::expect_documented_error(r, "exists and is not a model directory kurtail wrote; --force replaces only kurtail's own outputs");
  EXPECT_TRUE(file_exists(model + "/model.safetensors"));

  // A directory that looks like an output but also holds a user's file: not replaced.
  r = test::run_cli(kQuick + "--out " + dir + "/q");
  ASSERT_EQ(r.code, 0) << r.err;
  write_file_atomic(dir + "/q/notes.txt", "mine");
  r = test::run_cli(kQuick + "--force --out " + dir + "/q");
  test::expect_documented_error(r, "exists and is not a model directory kurtail wrote");
  EXPECT_EQ(read_file(dir + "/q/notes.txt"), "mine");
  fs::remove(dir + "/q/notes.txt");
  // kurtail's own output is replaced, and nothing is left beside it.
  r = test::run_cli(kQuick + "--force --out " + dir + "/q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"models", "q"}));

  // Quantizing a kurtail output into itself: it holds the input.
  r = test::run_cli(kQuick + "--model " + dir + "/q --force --out " + dir + "/q");
  test::expect_documented_error(r, "contains the input");
  EXPECT_TRUE(file_exists(dir + "/q/recipe.json"));

  // A symlink at OUT is never replaced through.
  fs::create_directory_symlink(dir + "/q", dir + "/link");
  r = test::run_cli(kQuick + "--force --out " + dir + "/link");
  test::expect_documented_error(r, "is a symbolic link; --force never replaces through a link");
  EXPECT_TRUE(file_exists(dir + "/q/recipe.json"));

  // GGUF: --force replaces a GGUF kurtail wrote, not another file, and never the input.
  write_file_atomic(dir + "/user.gguf", "not ours");
  r = test::run_cli("export-gguf -q --force --out " + dir + "/user.gguf");
  test::expect_documented_error(r, "exists and is not a GGUF file kurtail wrote");
  EXPECT_EQ(read_file(dir + "/user.gguf"), "not ours");
  r = test::run_cli("export-gguf -q --out " + dir + "/m.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("export-gguf -q --force --out " + dir + "/m.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli("export-gguf -q --force --model " + dir + "/m.gguf --out " + dir + "/m.gguf");
  test::expect_documented_error(r, "is the input");

  // HTML report: same rule.
  write_file_atomic(dir + "/page.html", "<html>mine</html>");
  r = test::run_cli("analyze -q --nsamples 1 --seqlen 32 --force --out " + dir + "/page.html");
  test::expect_documented_error(r, "exists and is not a HTML report kurtail wrote");
  EXPECT_EQ(read_file(dir + "/page.html"), "<html>mine</html>");
  fs::remove_all(dir);
}

TEST(OutputSafety, TrailingSlashNamesTheSameOutput) {
  // "q/" used to put the temp inside q (and, with --force, fail at the very end)
  const std::string dir = test::temp_dir("slash");
  auto r = test::run_cli(kQuick + "--out " + dir + "/q/");
  ASSERT_EQ(r.code, 0) << r.err;
  r = test::run_cli(kQuick + "--force --out " + dir + "/q/");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(entries(dir), std::vector<std::string>{"q"});
  EXPECT_TRUE(is_kurtail_model_dir(dir + "/q"));
  fs::remove_all(dir);
}

TEST(OutputSafety, ExportGgufNamesTheModelNotItsPath) {
  const std::string dir = test::temp_dir("gname");
  auto r = test::run_cli("export-gguf -q --out " + dir + "/m.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string bytes = read_file(dir + "/m.gguf", SIZE_MAX);
  EXPECT_EQ(bytes.find(test::data()), std::string::npos) << "general.name holds the input path";
  EXPECT_NE(bytes.find("tinyllama-8m"), std::string::npos);
  // A relative local path in _name_or_path is a path too: only its base name is written.
  const std::string m = dir + "/m";
  fs::create_directory(m);
  for (const char* f : {"model.safetensors", "tokenizer.model"}) fs::create_symlink(test::tinyllama() + "/" + f, m + "/" + f);
  std::string cfg = read_file(test::tinyllama() + "/config.json");
  cfg.insert(cfg.find('{') + 1, "\"_name_or_path\": \"checkpoints/run3/secret-llama\",");
  write_file_atomic(m + "/config.json", cfg);
  r = test::run_cli("export-gguf -q --model " + m + " --out " + dir + "/n.gguf");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string b2 = read_file(dir + "/n.gguf", SIZE_MAX);
  EXPECT_EQ(b2.find("checkpoints/run3"), std::string::npos);
  EXPECT_NE(b2.find("secret-llama"), std::string::npos);
  fs::remove_all(dir);
}

// Library level: the publication step itself.
OutputPolicy policy(bool force) {
  OutputPolicy p;
  p.force = force;
  p.kind = "test output";
  p.is_own_output = [](const std::string& path) { return file_exists(path + "/ours"); };
  return p;
}

TEST(OutputSafety, SecondRunToFinishDoesNotReplaceTheFirst) {
  const std::string dir = test::temp_dir("race");
  const std::string out = dir + "/out";
  // Both runs pass the up-front check while OUT does not exist yet.
  check_output(out, policy(false), true);
  {
    OutputDir a(out, policy(false)), b(out, policy(false));
    write_file_atomic(a.path() + "/ours", "a");
    write_file_atomic(b.path() + "/ours", "b");
    a.commit();
    try {
      b.commit();
      ADD_FAILURE() << "the second publication replaced the first";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("already exists (pass --force to replace it)"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(read_file(out + "/ours"), "a");
  // With --force, a kurtail output is replaced atomically and the old one removed.
  {
    OutputDir c(out, policy(true));
    write_file_atomic(c.path() + "/ours", "c");
    c.commit();
  }
  EXPECT_EQ(read_file(out + "/ours"), "c");
  EXPECT_EQ(entries(dir), std::vector<std::string>{"out"});
  // ... but not something that stopped being ours between the check and the swap.
  {
    OutputDir d(out, policy(true));
    write_file_atomic(d.path() + "/ours", "d");
    fs::remove(out + "/ours");
    write_file_atomic(out + "/theirs", "x");
    EXPECT_THROW(d.commit(), Error);
  }
  EXPECT_EQ(entries(out), std::vector<std::string>{"theirs"});
  EXPECT_EQ(entries(dir), std::vector<std::string>{"out"});  // the temp went with d
  fs::remove_all(dir);
}

TEST(OutputSafety, PlantedLinksAtTempNamesAreNeverFollowed) {
  const std::string dir = test::temp_dir("plant");
  const std::string victim = dir + "/victim";
  write_file_atomic(victim, "precious");
  // Every temp name this process could pick for OUT is a link to the victim.
  const std::string out = dir + "/o.gguf";
  for (int n = 0; n < 4096; n++)
    ASSERT_EQ(symlink(victim.c_str(), (out + ".tmp." + std::to_string(getpid()) + "." + std::to_string(n)).c_str()), 0);
  EXPECT_THROW(OutputFile(out, policy(false)), Error);
  EXPECT_THROW(write_file_atomic(out, "overwrite?"), Error);
  EXPECT_THROW(OutputDir(out, policy(false)), Error);
  EXPECT_EQ(read_file(victim), "precious");
  EXPECT_FALSE(file_exists(out));
  // A link planted at OUT itself: publication refuses it (no --force) and leaves it alone.
  const std::string out2 = dir + "/p.gguf";
  ASSERT_EQ(symlink(victim.c_str(), out2.c_str()), 0);
  {
    OutputFile f(out2, policy(false));
    f.write("new");
    EXPECT_THROW(f.commit(), Error);
  }
  EXPECT_EQ(read_file(victim), "precious");
  fs::remove_all(dir);
}

TEST(OutputSafety, InterruptedOrFailedOutputsLeaveNoTemp) {
  const std::string dir = test::temp_dir("gone");
  {
    OutputDir d(dir + "/o", policy(false));
    write_file_atomic(d.path() + "/ours", "x");
    OutputFile f(dir + "/f", policy(false));
    f.write("partial");
  }  // destroyed without commit (an error or Ctrl-C unwinding)
  EXPECT_TRUE(entries(dir).empty());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kt
