// HF tokenizer.json: input = parts [text, tokenizer.json]. A tokenizer that loads must encode
// the text into in-range ids and decode them again without throwing.
#include "fuzz_util.h"
#include "io/tokenizer.h"

using namespace kt;

static const std::vector<std::string>& seeds() {
  static std::vector<std::string> s = {
      fuzz::make_parts({"hello world", R"({"model":{"type":"BPE","vocab":{"h":0,"e":1,"l":2,"o":3,"Ġ":4,"w":5,"r":6,"d":7,"he":8,"ll":9},"merges":["h e","l l"]},"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false},"added_tokens":[{"id":10,"content":"<s>","special":true}]})"}),
      fuzz::make_parts({"hello world", R"({"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},"pre_tokenizer":null,"model":{"type":"BPE","byte_fallback":false,"unk_token":"<unk>","vocab":{"<unk>":0,"<0x41>":1,"▁":2,"h":3,"e":4,"l":5,"o":6,"▁h":7,"ll":8},"merges":["▁ h","l l"]},"added_tokens":[{"id":0,"content":"<unk>","special":true}]})"}),
      fuzz::make_parts({"a b", R"({"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true},"model":{"type":"BPE","byte_fallback":false,"vocab":{"▁":0,"a":1,"b":2,"▁a":3},"merges":["▁ a"]}})"})};
  return s;
}

KT_FUZZ_SEEDS(&seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = fuzz::split_parts(data, size, 2);
  std::unique_ptr<Tokenizer> t;
  try {
    t = load_tokenizer_json(fuzz::put("tokenizer.json", parts[1]));
  } catch (const Error&) {
    return 0;
  }
  for (std::string_view text : {parts[0], std::string_view("The quick brown fox, 123 héllo\n")}) {
    std::vector<int> ids;
    try {
      ids = t->encode(text);  // invalid UTF-8 text is a reported error
    } catch (const Error&) {
      continue;
    }
    for (int id : ids)
      if (id < 0 || id >= t->vocab_size()) std::abort();
    (void)t->decode(ids);
  }
  return 0;
}
