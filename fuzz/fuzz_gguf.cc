// GGUF: header, metadata, tensor infos; then the tokenizer it describes (if any) encodes text.
#include "fuzz_util.h"
#include "io/gguf.h"
#include "io/tokenizer.h"

using namespace kt;

// Seeds are the real vocabulary files in $KURTAIL_DATA/models/ggml-vocab (fuzz/run.sh).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::write_seeds_if_asked(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    GGUFFile f(fuzz::put("model.gguf", std::string_view((const char*)data, size)));
    if (f.has("tokenizer.ggml.model")) {
      auto t = load_gguf_tokenizer(f);
      auto ids = t->encode(" Hello world, 123 \xc3\xa9t\xc3\xa9!");
      for (int id : ids)
        if (id < 0 || id >= t->vocab_size()) std::abort();
      (void)t->decode(ids);
    }
  } catch (const Error&) {
  }
  return 0;
}
