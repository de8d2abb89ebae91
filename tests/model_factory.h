// Writes small random HF-format checkpoints for tests (config.json + safetensors, optionally
// sharded, bf16, or with Qwen2 attention biases), with tinyllama-8m's tokenizer beside them.
#pragma once
#include <string>

namespace kt::test {

struct RandomModelOptions {
  int hidden = 64, layers = 2, heads = 4, kv_heads = 2, ffn = 172, vocab = 8192, max_pos = 256;
  bool qwen2_bias = false;
  bool bf16 = false;
  int shards = 1;
  unsigned seed = 1;
  double weight_std = 0.05;
};

// Returns the directory written (created under /tmp).
std::string make_random_model(const RandomModelOptions& o);

}  // namespace kt::test
