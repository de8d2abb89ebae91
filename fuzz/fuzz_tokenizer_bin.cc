// llama2.c tokenizer.bin: input = parts [u16 vocab size, file]. Encoding must stay in range.
#include "fuzz_util.h"
#include "io/tokenizer.h"

using namespace kt;

static std::string tiny_bin() {
  std::string b;
  auto i32 = [&](int32_t v) { b.append((const char*)&v, 4); };
  auto f32 = [&](float v) { b.append((const char*)&v, 4); };
  i32(8);
  const char* toks[] = {"<unk>", "<s>", "</s>", " ", "a", "b", " a", "ab"};
  for (int i = 0; i < 8; i++) {
    f32(-(float)i);
    i32((int32_t)std::strlen(toks[i]));
    b += toks[i];
  }
  return b;
}

static const std::vector<std::string>& seeds() {
  static std::vector<std::string> s = {fuzz::make_parts({std::string("\x08\x00", 2), tiny_bin()})};
  return s;
}

KT_FUZZ_SEEDS(&seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(data, size, 2);
  uint16_t n = 0;
  std::memcpy(&n, parts[0].data(), std::min<size_t>(2, parts[0].size()));
  int vocab = 1 + n % 4096;
  std::unique_ptr<Tokenizer> t;
  try {
    t = load_llama2c_tokenizer(fuzz::put("tokenizer.bin", parts[1]), vocab);
  } catch (const Error&) {
    return 0;
  }
  auto ids = t->encode("ab a  b\xc3\xa9 zz");
  for (int id : ids)
    if (id < 0 || id >= t->vocab_size()) std::abort();
  (void)t->decode(ids);
  return 0;
}
