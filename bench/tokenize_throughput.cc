// Tokenizer throughput and memory on a text file, through the path evaluation uses
// (tokenize_file). One iteration per process so peak RSS belongs to this text alone; run by
// bench/tokenize_throughput.sh once per tokenizer kind and text.
//   KT_TOKENIZER  tokenizer.model | tokenizer.json | tokenizer.bin | *.gguf
//                 (default: tinyllama-8m's tokenizer.model under $KURTAIL_DATA)
//   KT_VOCAB      vocabulary size of a llama2.c tokenizer.bin (default 512)
//   KT_TEXT       text file (default: WikiText-2 test)
// Counters: MB/s, tokens, rss_mib_per_mb (growth of peak RSS while tokenizing, per MB of text),
// ids_fnv (a hash of the ids, to compare two builds on the same text).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "eval/perplexity.h"
#include "io/gguf.h"
#include "io/tokenizer.h"
#include "util/file.h"

namespace {

std::string env_or(const char* name, const std::string& def) {
  const char* e = std::getenv(name);
  return e && *e ? std::string(e) : def;
}

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;
}

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

void BM_TokenizeFile(benchmark::State& state) {
  const std::string data = kt::data_dir();
  const std::string tp = env_or("KT_TOKENIZER", data + "/models/tinyllama-8m/tokenizer.model");
  const std::string text = env_or("KT_TEXT", data + "/text/wikitext2_raw_test.joined.txt");
  std::unique_ptr<kt::Tokenizer> tok;
  if (ends_with(tp, ".model")) tok = kt::load_sentencepiece(tp);
  else if (ends_with(tp, ".json")) tok = kt::load_tokenizer_json(tp);
  else if (ends_with(tp, ".gguf")) tok = kt::load_gguf_tokenizer(kt::GGUFFile(tp));
  else tok = kt::load_llama2c_tokenizer(tp, std::stoi(env_or("KT_VOCAB", "512")));
  size_t bytes = 0;
  {
    int fd = kt::open_regular_file(text, &bytes);
    close(fd);
  }
  for (auto _ : state) {
    const double rss0 = peak_rss_mib();
    auto t0 = std::chrono::steady_clock::now();
    auto ids = kt::tokenize_file(*tok, text);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    uint64_t h = 1469598103934665603ull;
    for (int32_t id : ids) h = (h ^ (uint32_t)id) * 1099511628211ull;
    const double mb = bytes / 1e6;
    state.counters["MB_per_s"] = mb / s;
    state.counters["tokens"] = (double)ids.size();
    state.counters["rss_mib_per_mb"] = (peak_rss_mib() - rss0) / mb;
    state.counters["ids_fnv"] = (double)(h >> 12);  // 52 bits: exact in a double
    state.SetLabel(tok->kind());
  }
}
BENCHMARK(BM_TokenizeFile)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
