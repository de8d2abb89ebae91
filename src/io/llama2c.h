// llama2.c legacy checkpoints (run.c format): a 7 x int32 header then fp32 weights.
#pragma once
#include <memory>
#include <string>

#include "io/memory_source.h"
#include "core/spec.h"

namespace kt {

struct Llama2cCheckpoint {
  ModelSpec spec;  // rope_style = Interleaved
  std::unique_ptr<MemorySource> tensors;  // HF tensor names, [out, in] layout
};

// Reads and validates the whole file (size must equal what the header implies).
Llama2cCheckpoint read_llama2c(const std::string& path);

}  // namespace kt
