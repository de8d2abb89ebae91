// llama2.c checkpoint (.bin): the header and the size it implies. A checkpoint that loads and
// is small runs one forward pass of two tokens.
#include "fuzz_util.h"
#include "io/llama2c.h"
#include "model/forward.h"
#include "model/model.h"

using namespace kt;

static const std::vector<std::string>& seeds() {
  static std::vector<std::string> s = [] {
    // dim 8, hidden 16, 1 layer, 2 heads, 1 kv head, vocab 4, seq 8 (shared classifier)
    int32_t h[7] = {8, 16, 1, 2, 1, 4, 8};
    const int dim = 8, hid = 16, hd = 4, kvd = 4, vocab = 4, seq = 8;
    size_t floats = (size_t)vocab * dim + dim + dim * dim + 2 * dim * kvd + dim * dim + dim + 3 * dim * hid + dim +
                    (size_t)seq * hd / 2 * 2;
    std::string b((const char*)h, sizeof h);
    for (size_t i = 0; i < floats; i++) {
      float v = 0.01f * (float)(i % 17) - 0.05f;
      b.append((const char*)&v, 4);
    }
    return std::vector<std::string>{b};
  }();
  return s;
}

KT_FUZZ_SEEDS(&seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Llama2cCheckpoint ck;
  try {
    ck = read_llama2c(fuzz::put("model.bin", std::string_view((const char*)data, size)));
  } catch (const Error&) {
    return 0;
  }
  const ModelSpec& s = ck.spec;
  if ((int64_t)s.hidden * std::max(s.vocab, s.ffn) > (1 << 20) || s.n_layers > 4) return 0;
  int32_t toks[2] = {0, s.vocab - 1};
  try {  // NaN weights or overflowing activations are reported errors, not crashes
    auto m = Model::from_source(ck.spec, std::shared_ptr<TensorSource>(std::move(ck.tensors)), true);
    auto logits = forward(*m, toks, 1, 2, nullptr, nullptr);
    if (logits.size() != (size_t)2 * s.vocab) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
