// Every file or directory kurtail writes goes through OutputFile / OutputDir:
//  - the temp is created exclusively (O_CREAT|O_EXCL|O_NOFOLLOW for a file, mkdir for a
//    directory) under a fresh name OUT.tmp.<pid>.<n>, so a symlink or file planted at that
//    name is never followed or overwritten (the name is retried, up to a bound);
//  - publication is one atomic step that fails if OUT appeared meanwhile
//    (renameat2 RENAME_NOREPLACE), so two runs never silently replace each other's output;
//  - with --force, OUT is replaced only if the caller's recogniser says it is a kurtail output
//    of the same kind and it contains none of the run's inputs; the swap is atomic
//    (RENAME_EXCHANGE), the replaced object is checked again after the swap (so it cannot be
//    changed under us between the check and the swap) and removed without following links;
//  - until commit(), nothing exists at OUT; the destructor removes the temp (error, Ctrl-C).
// No shell is involved anywhere: removal is unlink/unlinkat/rmdir.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kt {

struct OutputPolicy {
  bool force = false;              // --force: may replace an existing kurtail output of this kind
  std::string kind;                // what OUT is, for messages ("kurtail model directory", "GGUF file")
  // True if the existing path (a file or a directory, never a symlink: those are refused
  // before) is one kurtail wrote of this kind. Without one, --force replaces nothing.
  std::function<bool(const std::string& path)> is_own_output;
  std::vector<std::string> inputs;  // paths this run reads: OUT must not be or contain any of them
};

// Checks, before any work, that OUT can be written under the policy: its parent exists and
// accepts a new entry (probed by creating and removing a temp), and an existing OUT is
// refused unless --force is given and it may be replaced. Fails with one line naming OUT.
void check_output(const std::string& out, const OutputPolicy& policy, bool is_dir);

class OutputFile {
 public:
  OutputFile(std::string out, OutputPolicy policy);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* p, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  uint64_t pos() const { return pos_; }
  const std::string& temp_path() const { return tmp_; }
  // fsync, close, publish at OUT (see the header comment). Fails naming OUT.
  void commit();

 private:
  std::string out_, tmp_;
  OutputPolicy policy_;
  int fd_ = -1;
  uint64_t pos_ = 0;
  bool done_ = false;
};

class OutputDir {
 public:
  OutputDir(std::string out, OutputPolicy policy);
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  // The temp directory; write its files with write_file_atomic (exclusive temps inside).
  const std::string& path() const { return tmp_; }
  void commit();

 private:
  std::string out_, tmp_;
  OutputPolicy policy_;
  bool done_ = false;
};

// Writes PATH as one file: exclusive temp beside it (never following a planted link), fsync,
// rename over PATH. For files inside a directory kurtail just created (an OutputDir) and for
// tests; user-named outputs go through OutputFile with a policy.
void write_file_atomic(const std::string& path, std::string_view bytes);
// The same, for a file too large to assemble in memory: `produce` hands its bytes in order to the
// sink it is given (each call appends); an exception from it removes the temp.
using ChunkSink = std::function<void(const void* p, size_t n)>;
void write_file_atomic(const std::string& path, const std::function<void(const ChunkSink&)>& produce);

// Removes a directory that holds only regular files (kurtail's own outputs and temps): unlinks
// each entry through the directory's fd (never following links), then the directory.
// Returns false (and leaves what it could not remove) if an entry is a directory.
bool remove_flat_dir(const std::string& path);

}  // namespace kt
