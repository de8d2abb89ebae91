#include "io/text.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "util/error.h"
#include "util/file.h"
#include "util/interrupt.h"

namespace kt {

std::vector<int32_t> tokenize_file(const Tokenizer& tok, const std::string& path, size_t max_tokens) {
  static_assert(std::is_same_v<int, int32_t>, "token ids are int32");
  // Streamed: blocks of the file go through the tokenizer's stream as they are read, so the
  // memory is the ids plus the tokenizer's working set, not the text (regular files only:
  // a FIFO or /dev/zero is refused by open_regular_file before a byte is read).
  size_t size = 0;
  const int fd = open_regular_file(path, &size);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  if (size > kMaxTextBytes)
    fail(path, "text is " + std::to_string(size) + " bytes, more than the " + std::to_string(kMaxTextBytes >> 20) +
                   " MiB kurtail reads");
  std::vector<int32_t> ids;
  if (tok.add_bos && tok.bos >= 0) ids.push_back(tok.bos);
  bool blank = true;
  try {
    auto stream = tok.stream();
    std::string block(std::min<size_t>(size, 1u << 20), '\0');
    size_t done = 0;
    while (done < size) {  // a file that grows while read is read to its stat size
      check_interrupted();
      ssize_t n = ::read(fd, block.data(), std::min(block.size(), size - done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail(path, std::string("read failed: ") + std::strerror(errno));
      if (n == 0) break;  // shrank
      std::string_view b(block.data(), (size_t)n);
      for (char c : b)
        if (blank && !std::isspace((unsigned char)c)) blank = false;
      stream->feed(b, &ids);
      done += (size_t)n;
      if (max_tokens > 0 && ids.size() >= max_tokens && !blank) break;  // ids fed so far are final
    }
    if (blank) fail(path, "text is empty");
    const bool stopped_early = max_tokens > 0 && ids.size() >= max_tokens;
    stream->finish(&ids);
    if (stopped_early) ids.resize(max_tokens);  // what finish() added ends at an arbitrary cut
  } catch (const Interrupted&) {
    throw;
  } catch (const Error& e) {
    const std::string msg = e.what(), prefix = printable(path, 4096) + ": ";
    if (msg.compare(0, prefix.size(), prefix) == 0) throw;
    fail(path, msg);  // "tokenizer: ..." problems are about this text
  }
  return ids;
}

Windows make_windows(const std::vector<int32_t>& tokens, int ctx, int max_windows, const std::string& what) {
  if (ctx < 2) fail("--ctx must be at least 2");
  Windows w;
  w.ctx = ctx;
  int64_t n = (int64_t)tokens.size() / ctx;
  if (n == 0)
    fail(what, "text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " + std::to_string(ctx));
  if (max_windows > 0 && n > max_windows) n = max_windows;
  w.tokens.assign(tokens.begin(), tokens.begin() + n * ctx);
  return w;
}

}  // namespace kt
