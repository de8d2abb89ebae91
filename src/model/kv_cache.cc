#include "model/kv_cache.h"

#include <algorithm>

#include "util/error.h"

namespace kt {

KVCache::KVCache(const ModelSpec& s, int nseq_, int max_len_)
    : nseq(nseq_), max_len(max_len_), kv_dim(s.kv_dim()), head_dim(s.head_dim), n_kv(s.n_kv_heads) {
  k.assign(s.n_layers, std::vector<float>((size_t)nseq * max_len * kv_dim));
  v.assign(s.n_layers, std::vector<float>((size_t)nseq * max_len * kv_dim));
}

namespace {
// Each head's codes start on a byte (an odd head_dim, which ModelSpec::validate refuses for
// RoPE but a hand-built spec may have, leaves its last high nibble unused).
int kv_head_bytes(const QuantSpec& q, int head_dim) { return q.bits <= 4 ? (head_dim + 1) / 2 : head_dim; }
}  // namespace

KVCache::KVCache(const ModelSpec& s, int nseq_, int max_len_, const QuantSpec& ks, const QuantSpec& vs)
    : nseq(nseq_), max_len(max_len_), kv_dim(s.kv_dim()), head_dim(s.head_dim), n_kv(s.n_kv_heads), k_spec(ks), v_spec(vs) {
  if (!ks.enabled()) {
    *this = KVCache(s, nseq_, max_len_);
    return;
  }
  for (const QuantSpec* q : {&ks, &vs})
    if (!q->enabled() || q->bits > 8 || q->gran != Granularity::PerGroup || q->group != s.head_dim)
      fail("quantized KV cache needs 2..8-bit K and V quantizers with group = head_dim");
  const size_t heads = (size_t)nseq * max_len * n_kv;
  kq.assign(s.n_layers, std::vector<uint8_t>(heads * kv_head_bytes(ks, head_dim)));
  vq.assign(s.n_layers, std::vector<uint8_t>(heads * kv_head_bytes(vs, head_dim)));
  kscale.assign(s.n_layers, std::vector<float>(heads));
  kzero = vscale = vzero = kscale;
}

int KVCache::head_bytes(bool is_v) const { return kv_head_bytes(is_v ? v_spec : k_spec, head_dim); }

size_t KVCache::bytes() const {
  size_t b = 0;
  for (auto* vv : {&k, &v})
    for (auto& x : *vv) b += x.size() * 4;
  for (auto* vv : {&kq, &vq})
    for (auto& x : *vv) b += x.size();
  for (auto* vv : {&kscale, &kzero, &vscale, &vzero})
    for (auto& x : *vv) b += x.size() * 4;
  return b;
}

void KVCache::write(int layer, bool is_v, int b, int t0, int n, const float* src, const RowTransform* head_pre) {
  if (head_pre && (!quantized() || head_pre->size() != head_dim))
    fail("KV cache: a head transform needs a quantized cache and size head_dim");
  if (!quantized()) {
    float* dst = (is_v ? v : k)[layer].data() + ((size_t)b * max_len + t0) * kv_dim;
    std::copy(src, src + (size_t)n * kv_dim, dst);
    return;
  }
  const QuantSpec& q = is_v ? v_spec : k_spec;
  const int hb = head_bytes(is_v);
  uint8_t* codes = (is_v ? vq : kq)[layer].data();
  float* sc = (is_v ? vscale : kscale)[layer].data();
  float* zp = (is_v ? vzero : kzero)[layer].data();
  // a prefill's rows over threads (each writes its own slots); a decode step's one row stays serial
#pragma omp parallel if ((int64_t)n * kv_dim >= 8192)
  {
    std::vector<float> head_buf(head_pre ? head_dim : 0);
#pragma omp for
    for (int t = 0; t < n; t++)
      for (int h = 0; h < n_kv; h++) {
        const float* x = src + (size_t)t * kv_dim + h * head_dim;
        if (head_pre) {
          std::copy(x, x + head_dim, head_buf.begin());
          head_pre->apply_row(head_buf.data());
          x = head_buf.data();
        }
        const size_t at = slot(b, h, t0 + t);
        QParams p = find_params_ref(x, head_dim, q);  // the same quantizer as fake_quant_ref
        sc[at] = p.scale;
        zp[at] = p.zero;
        uint8_t* out = codes + at * hb;
        std::fill(out, out + hb, 0);
        for (int j = 0; j < head_dim; j++) {
          const int c = quantize_level(x[j], p, q) - q.qmin();  // stored unsigned
          if (q.bits <= 4) out[j / 2] |= (uint8_t)(c << (4 * (j & 1)));
          else out[j] = (uint8_t)c;
        }
      }
  }
}

void KVCache::read(int layer, bool is_v, int b, int n, float* dst) const {
  if (!quantized()) {
    const float* src = (is_v ? v : k)[layer].data() + (size_t)b * max_len * kv_dim;
    std::copy(src, src + (size_t)n * kv_dim, dst);
    return;
  }
  const QuantSpec& q = is_v ? v_spec : k_spec;
  const int hb = head_bytes(is_v);
  const uint8_t* codes = (is_v ? vq : kq)[layer].data();
  const float* sc = (is_v ? vscale : kscale)[layer].data();
  const float* zp = (is_v ? vzero : kzero)[layer].data();
#pragma omp parallel for if (n >= 64)
  for (int t = 0; t < n; t++)
    for (int h = 0; h < n_kv; h++) {
      const size_t at = slot(b, h, t);
      const QParams p{sc[at], zp[at]};
      const uint8_t* in = codes + at * hb;
      float* out = dst + (size_t)t * kv_dim + (size_t)h * head_dim;
      for (int j = 0; j < head_dim; j++) {
        const int c = q.bits <= 4 ? (in[j / 2] >> (4 * (j & 1))) & 15 : in[j];
        out[j] = dequantize_level(c + q.qmin(), p);
      }
    }
}

void KVCache::append(int layer, int nseq_, int pos0, int ntok, const float* kp, const float* vp, const RowTransform* k_pre) {
  for (int b = 0; b < nseq_; b++) {
    write(layer, false, b, pos0, ntok, kp + (int64_t)b * ntok * kv_dim, k_pre);
    write(layer, true, b, pos0, ntok, vp + (int64_t)b * ntok * kv_dim);
  }
}

KVView KVCache::view(int layer, int nseq_, int len_, KVScratch* scratch) const {
  if (!quantized()) return KVView{k[layer].data(), v[layer].data(), max_len};
  scratch->k.resize((size_t)nseq_ * len_ * kv_dim);
  scratch->v.resize(scratch->k.size());
  for (int b = 0; b < nseq_; b++) {
    read(layer, false, b, len_, &scratch->k[(size_t)b * len_ * kv_dim]);
    read(layer, true, b, len_, &scratch->v[(size_t)b * len_ * kv_dim]);
  }
  return KVView{scratch->k.data(), scratch->v.data(), len_};
}

void KVCache::broadcast_first_sequence(int n) {
  if (n < 0 || n > max_len) fail("KV cache: cannot broadcast " + std::to_string(n) + " positions");
  auto spread = [&](auto& per_layer, size_t per_slot, bool head_major) {
    for (auto& buf : per_layer) {
      if (buf.empty()) continue;
      auto* d = buf.data();
      for (int b = 1; b < nseq; b++) {
        if (!head_major) {
          std::copy_n(d, (size_t)n * per_slot, d + (size_t)b * max_len * per_slot);
          continue;
        }
        for (int h = 0; h < n_kv; h++) std::copy_n(d + slot(0, h, 0) * per_slot, (size_t)n * per_slot, d + slot(b, h, 0) * per_slot);
      }
    }
  };
  spread(k, kv_dim, false), spread(v, kv_dim, false);  // position-major [b][position][kv_dim]
  if (!quantized()) return;
  spread(kq, head_bytes(false), true), spread(vq, head_bytes(true), true);
  for (auto* x : {&kscale, &kzero, &vscale, &vzero}) spread(*x, 1, true);
}

}  // namespace kt
