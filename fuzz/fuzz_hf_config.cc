// config.json -> ModelSpec. Property: a spec that parses survives spec_to_hf_config and
// reads back identically.
#include "io/hf_config.h"
#include "fuzz_util.h"
#include "core/spec.h"

namespace kt {
std::string spec_to_hf_config(const ModelSpec& s);
}
using namespace kt;

static const std::vector<std::string>& seeds() {
  static std::vector<std::string> s = {
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,"max_position_embeddings":256,"rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true})",
      R"({"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":4,"vocab_size":100,"sliding_window":32,"use_sliding_window":true,"eos_token_id":[1,2]})",
      R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":172,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}})"};
  return s;
}

KT_FUZZ_SEEDS(&seeds)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ModelSpec a;
  try {
    a = read_hf_config(fuzz::put("config.json", std::string_view((const char*)data, size)));
  } catch (const Error&) {
    return 0;
  }
  ModelSpec b = read_hf_config(fuzz::put("config2.json", spec_to_hf_config(a)));  // must not throw
  if (b.hidden != a.hidden || b.n_layers != a.n_layers || b.n_heads != a.n_heads || b.n_kv_heads != a.n_kv_heads ||
      b.head_dim != a.head_dim || b.ffn != a.ffn || b.vocab != a.vocab || b.arch != a.arch ||
      b.tie_embeddings != a.tie_embeddings || b.rope_scaling.type != a.rope_scaling.type)
    std::abort();
  return 0;
}
