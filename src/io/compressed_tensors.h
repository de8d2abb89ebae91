// compressed-tensors' `pack-quantized` checkpoints (what vLLM serves; docs/FORMAT.md "compressed-
// tensors"): the packing rule, and a reader that turns such a directory into kurtail tensors
// (fake-quant weights q * scale with their .qscale / .qbits) plus the quantizers and the online
// R4 its quantization_config describes. Sizes, shapes and values are checked against config.json
// and the family's table before use; each failure is one line naming the file and the entry.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/spec.h"
#include "core/tensor.h"

namespace kt {

// compressed-tensors pack_to_int32 (packed_dim 1): each value v of a row (int `bits`-bit, bits
// in {4, 8}) is stored as v + 2^(bits-1), 32/bits of them per int32, the first in the least
// significant bits; a row of `cols` values takes ceil(cols * bits / 32) words, the last padded
// with zero bits. q [rows, cols] -> [rows, ceil(cols*bits/32)].
std::vector<int32_t> ct_pack_int32(const int8_t* q, int64_t rows, int64_t cols, int bits);
// unpack_from_int32: the inverse; every bit pattern decodes to a value in range.
void ct_unpack_int32(const int32_t* packed, int64_t rows, int64_t cols, int bits, int8_t* q);
inline int64_t ct_packed_cols(int64_t cols, int bits) { return (cols * bits + 31) / 32; }

// What a compressed-tensors directory's quantization_config says, as kurtail runs it.
struct CtQuant {
  int w_bits = 4;
  int w_group = 0;        // 0: per output channel (strategy "channel")
  bool scales_f16 = false;  // every weight_scale is F16 (kurtail's --w-scale f16 recipes)
  int a_bits = 16;        // 16: no input_activations
  bool r4 = false;
  int r4_block = 0;       // `hadamard` with head_dim < width: block-diagonal Sylvester; 0: one matrix
  Tensor r4_matrix;       // non-`hadamard` types: the stored matrix (+-1 entries), [n, n]
  std::string r4_type;    // the transform's type, for messages
  bool quant_lm_head = false;
};

// True when DIR/config.json has quantization_config.quant_method "compressed-tensors".
bool is_compressed_tensors_dir(const std::string& dir);

struct CtModel {
  ModelSpec spec;
  std::shared_ptr<TensorSource> tensors;  // kurtail names (what Model::from_source reads)
  CtQuant quant;
};
// Reads DIR (config.json + model.safetensors or shards): every linear of the family's table must
// be stored packed (unless quantization_config ignores it), with weight_shape equal to its
// shape from config.json, weight_packed I32 [out, ceil(in*bits/32)], weight_scale [out, in/group]
// finite and > 0; no zero points (symmetric only), no tensor the format does not name.
CtModel read_compressed_tensors(const std::string& dir);

}  // namespace kt
