#include "model/forward.h"



#include <algorithm>

#include <cmath>
#include <limits>

#include "kernels/packed.h"
#include "kernels/gemm.h"
#include "util/error.h"

namespace kt {

const char* site_name(Site s) {
  switch (s) {
    case Site::AttnIn: return "attn_in";
    case Site::Q: return "q";
    case Site::K: return "k";
    case Site::V: return "v";
    case Site::OIn: return "o_in";
    case Site::MlpIn: return "mlp_in";
    case Site::DownIn: return "down_in";
    case Site::LmHeadIn: return "lm_head_in";
  }
  return "?";
}

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

void sgemm_nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  sgemm(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
}

void linear_forward(const float* x, int64_t rows, const Linear& l, float* y) {
  if (l.packed && l.act_bits == 0) {
    // packed weights but no activation quantizer attached: run the dequantized weights
    if (!l.dequantized) {
      auto t = std::make_shared<Tensor>();
      t->shape = l.w.shape;
      t->data = dequantize_packed(*l.packed);
      l.dequantized = std::move(t);
    }
  }
  if (l.packed && l.act_bits > 0) {  // real low-bit path: per-token int codes x packed weights -> int32 -> fp32
    QuantizedActs a;
    const Kernel k = active_kernel();
    quantize_acts(k, x, (int)rows, (int)l.in(), l.packed->Kp, l.act_bits, l.act_clip, l.packed->group, &a,
                  l.act_pre.get());
    gemm_q(k, a, *l.packed, l.b.empty() ? nullptr : l.b.ptr(), y);
    return;
  }
  const float* w = l.packed ? l.dequantized->ptr() : l.w.ptr();
  sgemm_nt(x, w, y, rows, l.out(), l.in());
  if (!l.b.empty()) {
    const int64_t n = l.out();
#pragma omp parallel for
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < n; j++) y[r * n + j] += l.b.data[j];
  }
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t cols, double eps) {
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++) {
    const float* xr = x + r * cols;
    float* yr = y + r * cols;
    double ss = 0;
    for (int64_t j = 0; j < cols; j++) ss += (double)xr[j] * xr[j];
    float inv = (float)(1.0 / std::sqrt(ss / cols + eps));
    for (int64_t j = 0; j < cols; j++) yr[j] = w[j] * (xr[j] * inv);
  }
}

namespace {

std::vector<float> rope_inv_freq(const ModelSpec& s) {
  const int half = s.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) {
    double f = 1.0 / std::pow(s.rope_theta, (2.0 * i) / s.head_dim);
    if (s.rope_scaling.type == "llama3") {
      const auto& r = s.rope_scaling;
      double wavelen = 2 * M_PI / f;
      double low_wl = r.original_max_position / r.low_freq_factor;
      double high_wl = r.original_max_position / r.high_freq_factor;
      if (wavelen > low_wl) {
        f = f / r.factor;
      } else if (wavelen >= high_wl) {
        double smooth = (r.original_max_position / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
        f = (1 - smooth) * f / r.factor + smooth * f;
      }
    }
    inv[i] = (float)f;
  }
  return inv;
}

}  // namespace

void apply_rope(const ModelSpec& s, float* x, int64_t ntok, int nheads, int pos0, int nseq) {
  const int hd = s.head_dim, half = hd / 2;
  const std::vector<float> inv = rope_inv_freq(s);
  // cos/sin per position, computed as HF does: fp32 angle, then cos/sin.
  std::vector<float> cs((size_t)ntok * half), sn((size_t)ntok * half);
  for (int64_t t = 0; t < ntok; t++)
    for (int i = 0; i < half; i++) {
      float ang = (float)(pos0 + t) * inv[i];
      cs[t * half + i] = (float)std::cos((double)ang);
      sn[t * half + i] = (float)std::sin((double)ang);
    }
  const int64_t width = (int64_t)nheads * hd;
#pragma omp parallel for collapse(2)
  for (int b = 0; b < nseq; b++)
    for (int64_t t = 0; t < ntok; t++) {
      const float* c = &cs[t * half];
      const float* sv = &sn[t * half];
      for (int h = 0; h < nheads; h++) {
        float* v = x + ((int64_t)b * ntok + t) * width + (int64_t)h * hd;
        if (s.rope_style == RopeStyle::RotateHalf) {
          for (int i = 0; i < half; i++) {
            float a = v[i], bb = v[i + half];
            v[i] = a * c[i] - bb * sv[i];
            v[i + half] = bb * c[i] + a * sv[i];
          }
        } else {
          for (int i = 0; i < half; i++) {
            float a = v[2 * i], bb = v[2 * i + 1];
            v[2 * i] = a * c[i] - bb * sv[i];
            v[2 * i + 1] = a * sv[i] + bb * c[i];
          }
        }
      }
    }
}

void embed_tokens(const Model& m, const int32_t* tokens, int64_t n, float* x) {
  const int64_t d = m.spec.hidden;
  for (int64_t i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= m.spec.vocab)
      // the ids come from the model's tokenizer: name its file (or the model, for a tokenizer inside it)
      fail(m.tokenizer_path.empty() ? m.path : m.tokenizer_path,
           "tokenizer produced token id " + std::to_string(tokens[i]) + ", out of range for the model's vocab of " +
               std::to_string(m.spec.vocab));
    std::copy(m.embed.ptr() + tokens[i] * d, m.embed.ptr() + (tokens[i] + 1) * d, x + i * d);
  }
}

void decoder_layer(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nseq, int ntok, int pos0,
                   KVCache* cache, Hooks* hooks) {
  const int64_t rows = (int64_t)nseq * ntok, d = s.hidden, qd = s.q_dim(), kvd = s.kv_dim(), hd = s.head_dim;
  if (!cache && pos0 != 0) fail("decoder_layer: pos0 != 0 needs a KV cache");
  if (cache && pos0 + ntok > cache->max_len) fail("KV cache too small for the requested positions");
  auto hook = [&](Site site, float* p, int64_t cols) {
    if (hooks) hooks->on_activation(layer, site, p, rows, cols);
  };

  // --- attention ---
  std::vector<float> h((size_t)rows * d);
  rms_norm(x, w.attn_norm.ptr(), h.data(), rows, d, s.rms_eps);
  hook(Site::AttnIn, h.data(), d);
  std::vector<float> q((size_t)rows * qd), k((size_t)rows * kvd), v((size_t)rows * kvd);
  linear_forward(h.data(), rows, w.q, q.data());
  linear_forward(h.data(), rows, w.k, k.data());
  linear_forward(h.data(), rows, w.v, v.data());
  apply_rope(s, q.data(), ntok, s.n_heads, pos0, nseq);
  apply_rope(s, k.data(), ntok, s.n_kv_heads, pos0, nseq);
  hook(Site::Q, q.data(), qd);
  hook(Site::K, k.data(), kvd);
  hook(Site::V, v.data(), kvd);
  // R3 on K deferred by the hook: fused into a quantized cache's write, applied here otherwise
  const RowTransform* k_pre = hooks ? hooks->k_head_transform() : nullptr;
  if (k_pre && !(cache && cache->quantized())) {
    if (k_pre->size() != hd) fail("decoder_layer: K head transform size differs from head_dim");
    for (int64_t i = 0; i < rows * s.n_kv_heads; i++) k_pre->apply_row(&k[i * hd]);
    k_pre = nullptr;
  }

  const int L = cache ? pos0 + ntok : ntok;  // keys visible to the last query
  const float* kbase;
  const float* vbase;
  int64_t seq_stride;  // rows between sequences in the key/value buffers
  std::vector<float> kread, vread;  // dequantized cache contents (quantized cache only)
  if (cache) {
    for (int b = 0; b < nseq; b++) {
      cache->write(layer, false, b, pos0, ntok, &k[(int64_t)b * ntok * kvd], k_pre);
      cache->write(layer, true, b, pos0, ntok, &v[(int64_t)b * ntok * kvd]);
    }
    if (cache->quantized()) {
      kread.resize((size_t)nseq * L * kvd);
      vread.resize(kread.size());
      for (int b = 0; b < nseq; b++) {
        cache->read(layer, false, b, L, &kread[(size_t)b * L * kvd]);
        cache->read(layer, true, b, L, &vread[(size_t)b * L * kvd]);
      }
      kbase = kread.data();
      vbase = vread.data();
      seq_stride = L;
    } else {
      kbase = cache->k[layer].data();
      vbase = cache->v[layer].data();
      seq_stride = cache->max_len;
    }
  } else {
    kbase = k.data();
    vbase = v.data();
    seq_stride = ntok;
  }

  std::vector<float> att((size_t)rows * qd);
  std::vector<float> scores((size_t)ntok * L);
  const float scale = 1.0f / std::sqrt((float)hd);
  const int group = s.n_heads / s.n_kv_heads;
  for (int b = 0; b < nseq; b++)
    for (int hh = 0; hh < s.n_heads; hh++) {
      const int kvh = hh / group;
      const float* qp = &q[(int64_t)b * ntok * qd + hh * hd];
      const float* kp = kbase + (int64_t)b * seq_stride * kvd + kvh * hd;
      const float* vp = vbase + (int64_t)b * seq_stride * kvd + kvh * hd;
      sgemm(false, true, ntok, L, hd, scale, qp, qd, kp, kvd, 0.0f, scores.data(), L);
#pragma omp parallel for if (ntok > 16)
      for (int i = 0; i < ntok; i++) {
        float* sr = &scores[(int64_t)i * L];
        const int p = (cache ? pos0 : 0) + i;  // absolute position of this query
        const int lo = s.sliding_window > 0 ? std::max(0, p - s.sliding_window + 1) : 0;
        float mx = -std::numeric_limits<float>::infinity();
        for (int j = lo; j <= p; j++) mx = std::max(mx, sr[j]);
        double sum = 0;
        for (int j = 0; j < L; j++) {
          float e = (j >= lo && j <= p) ? std::exp(sr[j] - mx) : 0.0f;
          sr[j] = e;
          sum += e;
        }
        const float inv = (float)(1.0 / sum);
        for (int j = lo; j <= p; j++) sr[j] *= inv;
      }
      sgemm(false, false, ntok, hd, L, 1.0f, scores.data(), L, vp, kvd, 0.0f, &att[(int64_t)b * ntok * qd + hh * hd], qd);
    }
  hook(Site::OIn, att.data(), qd);
  linear_forward(att.data(), rows, w.o, h.data());
#pragma omp parallel for
  for (int64_t i = 0; i < rows * d; i++) x[i] += h[i];

  // --- MLP (SwiGLU) ---
  rms_norm(x, w.mlp_norm.ptr(), h.data(), rows, d, s.rms_eps);
  hook(Site::MlpIn, h.data(), d);
  const int64_t f = s.ffn;
  std::vector<float> g((size_t)rows * f), u((size_t)rows * f);
  linear_forward(h.data(), rows, w.gate, g.data());
  linear_forward(h.data(), rows, w.up, u.data());
#pragma omp parallel for
  for (int64_t i = 0; i < rows * f; i++) {
    float a = g[i];
    g[i] = a / (1.0f + std::exp(-a)) * u[i];
  }
  hook(Site::DownIn, g.data(), f);
  linear_forward(g.data(), rows, w.down, h.data());
  // The residual update doubles as the NaN/Inf check: x * 0 is 0 for finite x and NaN
  // otherwise, so one extra multiply-add per element finds overflow where it starts.
  float nonfinite = 0.0f;
#pragma omp parallel for reduction(+ : nonfinite)
  for (int64_t i = 0; i < rows * d; i++) {
    x[i] += h[i];
    nonfinite += x[i] * 0.0f;
  }
  if (nonfinite != 0.0f || std::isnan(nonfinite))
    fail("model.layers." + std::to_string(layer) +
         ": non-finite activation (NaN/Inf) in the layer output; the weights or quantization scales overflow fp32");
}

void final_logits(const Model& m, float* x, int64_t rows, float* logits, Hooks* hooks) {
  const int64_t d = m.spec.hidden;
  std::vector<float> h((size_t)rows * d);
  rms_norm(x, m.final_norm.ptr(), h.data(), rows, d, m.spec.rms_eps);
  std::copy(h.begin(), h.end(), x);
  if (hooks) hooks->on_activation(m.spec.n_layers, Site::LmHeadIn, x, rows, d);
  sgemm_nt(x, m.head().ptr(), logits, rows, m.spec.vocab, d);
}

std::vector<float> forward(const Model& m, const int32_t* tokens, int nseq, int ntok, KVCache* cache, Hooks* hooks) {
  const int64_t rows = (int64_t)nseq * ntok;
  const int pos0 = cache ? cache->len : 0;
  std::vector<float> x((size_t)rows * m.spec.hidden);
  embed_tokens(m, tokens, rows, x.data());
  for (int l = 0; l < m.spec.n_layers; l++) {
    auto w = m.layer(l);
    decoder_layer(m.spec, *w, l, x.data(), nseq, ntok, pos0, cache, hooks);
  }
  if (cache) cache->len = pos0 + ntok;
  std::vector<float> logits((size_t)rows * m.spec.vocab);
  final_logits(m, x.data(), rows, logits.data(), hooks);
  return logits;
}

}  // namespace kt
