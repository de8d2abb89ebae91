#include "io/llama2c.h"

#include <cstdint>
#include <cstring>

#include "core/arch.h"
#include "util/error.h"
#include "util/file.h"

namespace kt {

Llama2cCheckpoint read_llama2c(const std::string& path) {
  MappedFile f(path);
  if (f.size() < 28) fail(path, "truncated llama2.c checkpoint (shorter than its 28-byte header)");
  int32_t h[7];
  std::memcpy(h, f.data(), 28);
  const int dim = h[0], hidden = h[1], layers = h[2], heads = h[3], kv_heads = h[4], seq_len = h[6];
  const bool shared = h[5] > 0;
  const int vocab = shared ? h[5] : h[5] == INT32_MIN ? 0 : -h[5];  // negative: unshared classifier
  if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kv_heads <= 0 || vocab <= 0 || seq_len <= 0 ||
      dim % heads != 0 || heads % kv_heads != 0 || dim > 65536 || hidden > 262144 || layers > 1024 ||
      vocab > (1 << 22) || seq_len > (1 << 20))
    fail(path, "implausible llama2.c header (dim=" + std::to_string(dim) + " hidden=" + std::to_string(hidden) +
                   " layers=" + std::to_string(layers) + " heads=" + std::to_string(heads) +
                   " kv_heads=" + std::to_string(kv_heads) + " vocab=" + std::to_string(vocab) + ")");
  const int64_t hs = dim / heads, kvd = (int64_t)kv_heads * hs, L = layers;
  // Count of floats in file order (run.c memory_map_weights).
  const int64_t n_embed = (int64_t)vocab * dim, n_att = L * dim, n_wq = L * dim * dim, n_wk = L * dim * kvd,
                n_wv = n_wk, n_wo = L * dim * dim, n_ffn = L * dim, n_w1 = L * dim * hidden, n_w2 = n_w1,
                n_w3 = n_w1, n_fin = dim, n_freq = (int64_t)seq_len * hs / 2 * 2;
  int64_t total = n_embed + n_att + n_wq + n_wk + n_wv + n_wo + n_ffn + n_w1 + n_w2 + n_w3 + n_fin + n_freq;
  if (!shared) total += n_embed;
  const uint64_t expect = 28 + (uint64_t)total * 4;
  if (f.size() != expect)
    fail(path, "llama2.c checkpoint has " + std::to_string(f.size()) + " bytes but its header implies " +
                   std::to_string(expect));

  Llama2cCheckpoint ck;
  ModelSpec& s = ck.spec;
  s.arch = "llama";
  s.hidden = dim;
  s.ffn = hidden;
  s.n_layers = layers;
  s.n_heads = heads;
  s.n_kv_heads = kv_heads;
  s.head_dim = (int)hs;
  s.vocab = vocab;
  s.max_pos = seq_len;
  s.rms_eps = 1e-5;
  s.rope_theta = 10000.0;
  s.rope_style = RopeStyle::Interleaved;
  s.tie_embeddings = shared;
  s.bos_id = 1;
  s.eos_ids = {2};
  s.validate(path);

  ck.tensors = std::make_unique<MemorySource>(path);
  const float* p = reinterpret_cast<const float*>(f.data() + 28);
  // f.data()+28 is only 4-byte aligned; copying through memcpy keeps that legal.
  auto take = [&](std::vector<int64_t> shape) {
    Tensor t(std::move(shape));
    std::memcpy(t.data.data(), p, t.data.size() * 4);
    p += t.data.size();
    return t;
  };
  const ArchTable& t = arch_table(s);
  auto global = [&](Global g) { ck.tensors->add(t.global(g).hf, take(global_shape(t.global(g), s))); };
  // run.c's file order: all layers of one tensor, then the next; w1, w2, w3 = gate, down, up
  const Field order[] = {Field::AttnNorm, Field::Q, Field::K, Field::V, Field::O,
                         Field::MlpNorm, Field::Gate, Field::Down, Field::Up};
  global(Global::Embed);
  for (Field f : order)
    for (int l = 0; l < layers; l++) ck.tensors->add(hf_name(t.row(f), l, "weight"), take(row_shape(t.row(f), s)));
  global(Global::FinalNorm);
  p += n_freq;  // precomputed RoPE tables: recomputed at run time
  if (!shared) global(Global::LmHead);
  return ck;
}

}  // namespace kt
