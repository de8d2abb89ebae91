#include "util/output.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace kt {

namespace {

std::string errstr(int e) { return std::strerror(e); }

// "q4/" names the same output as "q4"; the temp must be a sibling, never inside it.
std::string strip_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// Creates a fresh temp beside `out`: a file (returns its fd) or a directory (returns -1).
// The name is new each time (pid + counter); EEXIST (something planted there, a symlink
// included: O_EXCL never follows one, mkdir never reuses one) just moves on to the next name.
std::string make_temp(const std::string& out, bool is_dir, int* fd, const char* what_fails) {
  static unsigned counter = 0;
  for (int attempt = 0; attempt < 64; attempt++) {
    std::string tmp = out + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    if (is_dir) {
      if (::mkdir(tmp.c_str(), 0755) == 0) return tmp;
    } else {
      int f = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
      if (f >= 0) {
        *fd = f;
        return tmp;
      }
    }
    if (errno != EEXIST) fail(out, std::string(what_fails) + errstr(errno));
  }
  fail(out, std::string(what_fails) + "64 temp names beside it are taken");
}

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) return "";
  return buf;
}

// True if `out` (which exists) is one of the inputs or a directory above one.
bool contains_input(const std::string& out, const std::vector<std::string>& inputs, std::string* which) {
  const std::string o = real_path(out);
  if (o.empty()) return false;
  for (const std::string& in : inputs) {
    const std::string r = real_path(in);
    if (r.empty()) continue;
    if (r == o || (r.size() > o.size() && r.compare(0, o.size(), o) == 0 && (o == "/" || r[o.size()] == '/'))) {
      *which = in;
      return true;
    }
  }
  return false;
}

// Why an existing `path` may not be replaced under the policy, or "" if it may.
std::string why_not_replaceable(const std::string& path, const OutputPolicy& p, bool is_dir) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return "cannot stat: " + errstr(errno);
  if (S_ISLNK(st.st_mode)) return "is a symbolic link; --force never replaces through a link";
  if (is_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
    return std::string("exists and is not a ") + (is_dir ? "directory" : "regular file") + "; --force replaces only a " +
           p.kind + " that kurtail wrote";
  std::string which;
  if (contains_input(path, p.inputs, &which))
    return (is_dir ? "contains the input " : "is the input ") + quote(which) + "; refusing to replace it";
  if (!p.is_own_output || !p.is_own_output(path))
    return "exists and is not a " + p.kind + " kurtail wrote; --force replaces only kurtail's own outputs";
  return "";
}

void remove_path(const std::string& p, bool is_dir) {
  if (is_dir) remove_flat_dir(p);
  else ::unlink(p.c_str());
}

// Moves the finished temp to `out` in one step that fails if `out` exists; with --force an
// existing kurtail output is swapped out atomically and removed.
// Sets *keep_tmp before failing when the old output could not be put back after a refused
// swap: `tmp` then holds the old output and must not be removed.
void publish(const std::string& tmp, const std::string& out, const OutputPolicy& p, bool is_dir, bool* keep_tmp) {
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_NOREPLACE) == 0) return;
  int e = errno;
  const bool no_renameat2 = e == EINVAL || e == ENOSYS;
  if (no_renameat2) {  // a file system without renameat2 flags (some network file systems)
    struct stat st {};
    if (::lstat(out.c_str(), &st) != 0) {
      // A file: link() fails if out appeared. A directory: rename() over an empty directory
      // that appeared in this instant is the one race left on such file systems.
      if (!is_dir) {
        if (::link(tmp.c_str(), out.c_str()) == 0) {
          ::unlink(tmp.c_str());
          return;
        }
      } else if (::rename(tmp.c_str(), out.c_str()) == 0) {
        return;
      }
      e = errno;
      if (e != EEXIST && e != ENOTEMPTY) fail(out, "cannot move output into place: " + errstr(e));
    }
    e = EEXIST;
  }
  if (e != EEXIST && e != ENOTEMPTY) fail(out, "cannot move output into place: " + errstr(e));
  if (!p.force) fail(out, "already exists (pass --force to replace it)");
  if (std::string why = why_not_replaceable(out, p, is_dir); !why.empty()) fail(out, why);
  if (!no_renameat2) {
    if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) == 0) {
      // tmp now names the old output: check it again (it could have been swapped for something
      // else after the check above), and swap back if it is not ours to delete.
      if (std::string why = why_not_replaceable(tmp, p, is_dir); !why.empty()) {
        if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_EXCHANGE) != 0) {
          *keep_tmp = true;
          fail(out, why + "; it could not be put back and is left at " + quote(tmp));
        }
        fail(out, why);
      }
      remove_path(tmp, is_dir);
      return;
    }
    // OUT went away between the failed NOREPLACE and the exchange: publish plainly.
    if (errno == ENOENT && ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, out.c_str(), RENAME_NOREPLACE) == 0)
      return;
  }
  // No exchange: move the old output aside under a fresh name, then put ours in place.
  int unused = -1;
  std::string aside = make_temp(out + ".old", /*is_dir=*/true, &unused, "cannot replace existing output: ");
  ::rmdir(aside.c_str());
  if (::rename(out.c_str(), aside.c_str()) != 0) fail(out, "cannot replace existing output: " + errstr(errno));
  if (std::string why = why_not_replaceable(aside, p, is_dir); !why.empty()) {
    ::rename(aside.c_str(), out.c_str());
    fail(out, why);
  }
  if (::rename(tmp.c_str(), out.c_str()) != 0) {
    e = errno;
    ::rename(aside.c_str(), out.c_str());
    fail(out, "cannot move output into place: " + errstr(e));
  }
  remove_path(aside, is_dir);
  return;
}

// publish() for an OutputFile/OutputDir: *done says whether the temp is settled (moved into
// place, or kept because a refused swap left the old output in it) so the destructor leaves it.
void commit_temp(const std::string& tmp, const std::string& out, const OutputPolicy& p, bool is_dir, bool* done) {
  bool keep = false;
  try {
    publish(tmp, out, p, is_dir, &keep);
  } catch (...) {
    *done = keep;
    throw;
  }
  *done = true;
}

void write_all(int fd, const void* p, size_t n, const std::string& name) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t k = ::write(fd, c, n);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) fail(name, "write failed: " + errstr(errno));
    c += k;
    n -= (size_t)k;
  }
}

}  // namespace

void check_output(const std::string& out_arg, const OutputPolicy& policy, bool is_dir) {
  const std::string out = strip_slashes(out_arg);
  struct stat st {};
  if (::lstat(out.c_str(), &st) == 0) {
    if (!policy.force) fail(out, "already exists (pass --force to replace it)");
    if (std::string why = why_not_replaceable(out, policy, is_dir); !why.empty()) fail(out, why);
  }
  int fd = -1;
  std::string tmp = make_temp(out, is_dir, &fd, is_dir ? "cannot create output directory: " : "cannot write: ");
  if (is_dir) ::rmdir(tmp.c_str());
  else {
    ::close(fd);
    ::unlink(tmp.c_str());
  }
}

OutputFile::OutputFile(std::string out, OutputPolicy policy)
    : out_(strip_slashes(std::move(out))), policy_(std::move(policy)) {
  tmp_ = make_temp(out_, /*is_dir=*/false, &fd_, "cannot write: ");
}

OutputFile::~OutputFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_) ::unlink(tmp_.c_str());
}

void OutputFile::write(const void* p, size_t n) {
  write_all(fd_, p, n, tmp_);
  pos_ += n;
}

void OutputFile::commit() {
  if (::fsync(fd_) != 0) fail(tmp_, "write failed: " + errstr(errno));
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail(tmp_, "write failed: " + errstr(errno));
  commit_temp(tmp_, out_, policy_, /*is_dir=*/false, &done_);
}

OutputDir::OutputDir(std::string out, OutputPolicy policy)
    : out_(strip_slashes(std::move(out))), policy_(std::move(policy)) {
  int unused = -1;
  tmp_ = make_temp(out_, /*is_dir=*/true, &unused, "cannot create output directory: ");
}

OutputDir::~OutputDir() {
  if (!done_) remove_flat_dir(tmp_);
}

void OutputDir::commit() {
  commit_temp(tmp_, out_, policy_, /*is_dir=*/true, &done_);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  write_file_atomic(path, [&](const ChunkSink& put) { put(bytes.data(), bytes.size()); });
}

void write_file_atomic(const std::string& path, const std::function<void(const ChunkSink&)>& produce) {
  int fd = -1;
  const std::string tmp = make_temp(path, /*is_dir=*/false, &fd, "cannot write: ");
  try {
    produce([&](const void* p, size_t n) { write_all(fd, p, n, tmp); });
    if (::fsync(fd) != 0) fail(tmp, "write failed: " + errstr(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail(tmp, "write failed: " + errstr(e));
  }
  // rename() replaces a link at PATH itself; it never writes through it.
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    fail(path, "cannot rename into place: " + errstr(e));
  }
}

bool remove_flat_dir(const std::string& path) {
  int dfd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return false;
  DIR* d = ::fdopendir(dfd);
  if (!d) {
    ::close(dfd);
    return false;
  }
  bool ok = true;
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  for (const std::string& n : names)
    if (::unlinkat(dfd, n.c_str(), 0) != 0) ok = false;  // a subdirectory: EISDIR, left alone
  ::closedir(d);
  if (ok && ::rmdir(path.c_str()) != 0) ok = false;
  return ok;
}

}  // namespace kt
