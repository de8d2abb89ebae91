// GGUF: header, metadata, tensor infos and data ranges; the model spec and tensors (F32, F16,
// BF16, Q8_0, q/k un-permutation); then the tokenizer it describes (if any) encodes text.
#include "fuzz_util.h"
#include "io/gguf.h"
#include "io/gguf_model.h"
#include "io/tokenizer.h"

using namespace kt;

// Seeds are the real vocabulary files in $KURTAIL_DATA/models/ggml-vocab (fuzz/run.sh).
KT_FUZZ_SEEDS(nullptr)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto fp = std::make_shared<const GGUFFile>(fuzz::put("model.gguf", std::string_view((const char*)data, size)));
    const GGUFFile& f = *fp;
    try {  // as a model: spec from metadata, every readable tensor converted to fp32
      ModelSpec spec = gguf_model_spec(f);
      GGUFSource src(fp, spec);
      for (auto& n : src.names()) {
        const TensorInfo& ti = src.info(n);
        if (Tensor::numel_of(ti.shape) <= (1u << 20)) (void)to_f32(ti);
      }
    } catch (const Error&) {
    }
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
