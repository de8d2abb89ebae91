#include "model/kv_cache.h"

#include <algorithm>

#include "util/error.h"

namespace kt {

KVCache::KVCache(const ModelSpec& s, int nseq_, int max_len_)
    : nseq(nseq_), max_len(max_len_), kv_dim(s.kv_dim()), head_dim(s.head_dim) {
  k.assign(s.n_layers, std::vector<float>((size_t)nseq * max_len * kv_dim));
  v.assign(s.n_layers, std::vector<float>((size_t)nseq * max_len * kv_dim));
}

namespace {
int kv_row_bytes(const QuantSpec& q, int kv_dim) { return q.bits <= 4 ? (kv_dim + 1) / 2 : kv_dim; }
}  // namespace

KVCache::KVCache(const ModelSpec& s, int nseq_, int max_len_, const QuantSpec& ks, const QuantSpec& vs)
    : nseq(nseq_), max_len(max_len_), kv_dim(s.kv_dim()), head_dim(s.head_dim), k_spec(ks), v_spec(vs) {
  if (!ks.enabled()) {
    *this = KVCache(s, nseq_, max_len_);
    return;
  }
  for (const QuantSpec* q : {&ks, &vs})
    if (!q->enabled() || q->bits > 8 || q->gran != Granularity::PerGroup || q->group != s.head_dim)
      fail("quantized KV cache needs 2..8-bit K and V quantizers with group = head_dim");
  const size_t rows = (size_t)nseq * max_len, heads = rows * s.n_kv_heads;
  kq.assign(s.n_layers, std::vector<uint8_t>(rows * kv_row_bytes(ks, kv_dim)));
  vq.assign(s.n_layers, std::vector<uint8_t>(rows * kv_row_bytes(vs, kv_dim)));
  kscale.assign(s.n_layers, std::vector<float>(heads));
  kzero = vscale = vzero = kscale;
}

int KVCache::row_bytes(bool is_v) const { return kv_row_bytes(is_v ? v_spec : k_spec, kv_dim); }

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
  const int rb = kv_row_bytes(q, kv_dim), nh = kv_dim / head_dim;
  uint8_t* codes = (is_v ? vq : kq)[layer].data();
  float* sc = (is_v ? vscale : kscale)[layer].data();
  float* zp = (is_v ? vzero : kzero)[layer].data();
  std::vector<float> head_buf(head_pre ? head_dim : 0);
  for (int t = 0; t < n; t++) {
    const size_t row = (size_t)b * max_len + t0 + t;
    uint8_t* out = codes + row * rb;
    std::fill(out, out + rb, 0);
    for (int h = 0; h < nh; h++) {
      const float* x = src + (size_t)t * kv_dim + h * head_dim;
      if (head_pre) {
        std::copy(x, x + head_dim, head_buf.begin());
        head_pre->apply_row(head_buf.data());
        x = head_buf.data();
      }
      QParams p = find_params_ref(x, head_dim, q);  // the same quantizer as fake_quant_ref
      sc[row * nh + h] = p.scale;
      zp[row * nh + h] = p.zero;
      for (int j = 0; j < head_dim; j++) {
        int c = quantize_level(x[j], p, q) - q.qmin();  // stored unsigned
        int idx = h * head_dim + j;
        if (q.bits <= 4) out[idx / 2] |= (uint8_t)(c << (4 * (idx & 1)));
        else out[idx] = (uint8_t)c;
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
  const int rb = kv_row_bytes(q, kv_dim), nh = kv_dim / head_dim;
  const uint8_t* codes = (is_v ? vq : kq)[layer].data();
  const float* sc = (is_v ? vscale : kscale)[layer].data();
  const float* zp = (is_v ? vzero : kzero)[layer].data();
#pragma omp parallel for if (n >= 64)
  for (int t = 0; t < n; t++) {
    const size_t row = (size_t)b * max_len + t;
    const uint8_t* in = codes + row * rb;
    for (int h = 0; h < nh; h++) {
      QParams p{sc[row * nh + h], zp[row * nh + h]};
      for (int j = 0; j < head_dim; j++) {
        int idx = h * head_dim + j;
        int c = q.bits <= 4 ? (in[idx / 2] >> (4 * (idx & 1))) & 15 : in[idx];
        dst[(size_t)t * kv_dim + idx] = dequantize_level(c + q.qmin(), p);
      }
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

}  // namespace kt
