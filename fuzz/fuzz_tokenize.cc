// Text through every tokenizer kind: input = parts [kind selector, text]. The tokenizers are
// the real ones in $KURTAIL_DATA (SentencePiece tokenizer.model, byte-level BPE tokenizer.json,
// llama2.c tokenizer.bin, GGUF "llama" and "gpt2" vocabularies) plus small generated ones (so
// the target works without the data). Properties: ids in range; the ids do not depend on how
// the text is fed (whole vs 1-, 7- and 64-byte blocks: the streaming cuts are exact); decode
// never throws; invalid UTF-8 is a kt::Error for every feeding or for none.
#include <optional>

#include "fuzz_util.h"
#include "io/gguf.h"
#include "io/tokenizer.h"

using namespace kt;

namespace {

// A byte-level tokenizer.json with added tokens, and a SentencePiece-style one with byte
// fallback (all 256 <0xXX> tokens), written to the scratch directory.
std::string small_byte_level() {
  return R"({"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},)"
         R"({"type":"ByteLevel","add_prefix_space":true}]},"model":{"type":"BPE","vocab":{"h":0,"e":1,"l":2,"o":3,)"
         R"("Ġ":4,"w":5,"r":6,"d":7,"he":8,"ll":9,"1":10,"2":11},"merges":["h e","l l"]},"added_tokens":[)"
         R"({"id":12,"content":"<s>","special":true},{"id":13,"content":"<s><s>","special":false},)"
         R"({"id":14,"content":"ll","special":false}]})";
}
std::string small_metaspace() {
  std::string vocab = R"("<unk>":0,"▁":1,"a":2,"b":3,"▁a":4,"ab":5,"▁ab":6)";
  for (int b = 0; b < 256; b++) {
    char hex[16];
    std::snprintf(hex, sizeof hex, ",\"<0x%02X>\":%d", b, 7 + b);
    vocab += hex;
  }
  return R"({"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},)"
         R"({"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"pre_tokenizer":null,)"
         R"("model":{"type":"BPE","byte_fallback":true,"unk_token":"<unk>","vocab":{)" + vocab +
         R"(},"merges":["▁ a","a b","▁a b"]}})";
}

std::vector<std::unique_ptr<Tokenizer>> load_all() {
  std::vector<std::unique_ptr<Tokenizer>> v;
  auto add = [&](auto&& make) {
    try {
      v.push_back(make());
    } catch (const Error&) {  // data not there: fuzz the rest
    }
  };
  const std::string d = data_dir() + "/models/";
  add([&] { return load_sentencepiece(d + "tinyllama-8m/tokenizer.model"); });
  add([&] { return load_tokenizer_json(d + "smollm2-135m-tokenizer/tokenizer.json"); });
  add([&] { return load_llama2c_tokenizer(d + "aidreams260K/tok512.bin", 512); });
  add([&] { return load_gguf_tokenizer(GGUFFile(d + "ggml-vocab/ggml-vocab-llama-spm.gguf")); });
  add([&] { return load_gguf_tokenizer(GGUFFile(d + "ggml-vocab/ggml-vocab-gpt-2.gguf")); });
  add([&] { return load_tokenizer_json(fuzz::put("byte_level.json", small_byte_level())); });
  add([&] { return load_tokenizer_json(fuzz::put("metaspace.json", small_metaspace())); });
  if (v.empty()) std::abort();  // the generated ones must load
  return v;
}

std::optional<std::vector<int>> encode_or_error(const Tokenizer& t, std::string_view text, size_t chunk) {
  try {
    return t.encode(text, chunk);
  } catch (const Error&) {
    return std::nullopt;
  }
}

const std::vector<std::string>& seeds() {
  static std::vector<std::string> s;
  if (s.empty())
    for (int k = 0; k < 7; k++)
      for (std::string text : {std::string("Hello world, 123 h\xc3\xa9llo\n\n  tabs\tand <s><s> ll"),
                               std::string("a b ab  aab \xf0\x9f\xa6\x99 x"), std::string(300, 'a')})
        s.push_back(fuzz::make_parts({std::string(1, (char)k), text}));
  return s;
}

}  // namespace

KT_FUZZ_SEEDS(&seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tokenizers = load_all();
  auto parts = fuzz::split_parts(data, size, 2);
  const size_t k = parts[0].empty() ? 0 : (unsigned char)parts[0][0] % tokenizers.size();
  const Tokenizer& t = *tokenizers[k];
  const std::string_view text = parts[1];
  auto whole = encode_or_error(t, text, SIZE_MAX);
  for (size_t chunk : {1, 7, 64}) {
    auto part = encode_or_error(t, text, chunk);
    if (part.has_value() != whole.has_value()) std::abort();  // an error must not depend on the feeding
    if (part && *part != *whole) std::abort();                // nor the ids
  }
  if (!whole) return 0;
  for (int id : *whole)
    if (id < 0 || id >= t.vocab_size()) std::abort();
  (void)t.decode(*whole);
  return 0;
}
