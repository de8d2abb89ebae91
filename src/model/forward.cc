#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/packed.h"
#include "kernels/gemm.h"
#include "kernels/vmath.h"
#include "model/attend_cache.h"
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

void sgemm_nt(const float* x, const float* w, float* y, int64_t M, int64_t N, int64_t K) {
  sgemm(false, true, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
}

// Output rows a linear held packed dequantizes at a time (Linear::dequantize_per_call): 16 MiB
// of fp32 at a 4096-wide input.
constexpr int64_t kDequantRows = 1024;

static void add_bias(const Linear& l, float* y, int64_t rows) {
  if (l.b.empty()) return;
  const int64_t n = l.out();
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < n; j++) y[r * n + j] += l.b.data[j];
}

void linear_forward(const float* x, int64_t rows, const Linear& l, float* y) {
  if (l.packed && l.act_bits == 0 && l.dequantize_per_call) {
    // By blocks of output rows, so one block's fp32 copy exists at a time. The blocks are whole
    // sgemm tiles (kGemmTileN): each output gets the bits of one call on the full matrix.
    static_assert(kDequantRows % kGemmTileN == 0 && kDequantRows % kTileN == 0);
    const int64_t N = l.out(), K = l.in();
    std::vector<float> w((size_t)std::min(N, kDequantRows) * K);
    for (int64_t n0 = 0; n0 < N; n0 += kDequantRows) {
      const int64_t nb = std::min(kDequantRows, N - n0);
      dequantize_packed_rows(*l.packed, (int)n0, (int)(n0 + nb), w.data());
      sgemm(false, true, rows, nb, K, 1.0f, x, K, w.data(), K, 0.0f, y + n0, N);
    }
    add_bias(l, y, rows);
    return;
  }
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
  add_bias(l, y, rows);
}

// Whether linears reading one input can share its quantized codes: the same activation
// quantizer (bits, clip, online transform) and the same packed layout (K padding, weight group,
// which the per-group code sums depend on).
static bool same_act_quantizer(const Linear& a, const Linear& b) {
  return a.packed && b.packed && a.act_bits > 0 && a.act_bits == b.act_bits && a.act_clip == b.act_clip &&
         a.act_pre == b.act_pre && a.in() == b.in() && a.packed->Kp == b.packed->Kp &&
         a.packed->group == b.packed->group;
}

void linears_forward(const float* x, int64_t rows, std::initializer_list<LinearOut> outs) {
  const Linear& first = *outs.begin()->l;
  bool shared = true;
  for (const LinearOut& o : outs) shared = shared && same_act_quantizer(first, *o.l);
  if (!shared) {
    for (const LinearOut& o : outs) linear_forward(x, rows, *o.l, o.y);
    return;
  }
  // q/k/v (or gate/up) quantize the same rows to the same codes: quantize them once
  QuantizedActs a;
  const Kernel k = active_kernel();
  quantize_acts(k, x, (int)rows, (int)first.in(), first.packed->Kp, first.act_bits, first.act_clip,
                first.packed->group, &a, first.act_pre.get());
  for (const LinearOut& o : outs) gemm_q(k, a, *o.l->packed, o.l->b.empty() ? nullptr : o.l->b.ptr(), o.y);
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

void embed_tokens(const Model& m, const int32_t* tokens, int64_t n, float* x) {
  const int64_t d = m.spec.hidden;
  for (int64_t i = 0; i < n; i++) {
    if (tokens[i] < 0 || tokens[i] >= m.spec.vocab)
      // the ids come from the model's tokenizer: name its file (or the model, for a tokenizer inside it)
      fail(m.tokenizer_path.empty() ? m.path : m.tokenizer_path,
           "tokenizer produced token id " + std::to_string(tokens[i]) + ", out of range for the model's vocab of " +
               std::to_string(m.spec.vocab));
  }
  m.embed_rows_of(tokens, n, x);  // a streamed quantization's deferred embedding: read from the checkpoint
  if (m.spec.embed_scale != 1.0f)
    for (int64_t i = 0; i < n * d; i++) x[i] *= m.spec.embed_scale;
}

namespace {

// Calls the hook of one site (rows x cols), if there is one.
struct SiteHook {
  Hooks* hooks;
  int layer;
  int64_t rows;
  void operator()(Site site, float* p, int64_t cols) const {
    if (hooks) hooks->on_activation(layer, site, p, rows, cols);
  }
  bool ends_pass(Site site) const { return hooks && hooks->pass_ends_at(site); }
};

// Gemma 2's post-norm of a block output y [rows, hidden] before its residual add, in place; then
// the online R1 of a rotated model (the post-norm's weight does not commute with R1, so the
// writer's output stays in the original basis and is rotated here).
void post_norm(const ModelSpec& s, const Tensor& g, const RowTransform* r1, float* y, int64_t rows) {
  const int64_t d = s.hidden;
  rms_norm(y, g.ptr(), y, rows, d, s.rms_eps);
  if (!r1) return;
  if (r1->size() != d) fail("post-norm rotation size differs from hidden_size");
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++) r1->apply_row(y + r * d);
}

// x += y, elementwise over n values.
void add_residual(float* x, const float* y, int64_t n) {
#pragma omp parallel for
  for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

// x += y, and fails naming the layer when the result holds a NaN or Inf (overflowing weights
// or scales): the layer's last residual update doubles as the check, since x * 0 is 0 for
// finite x and NaN otherwise: one extra multiply-add per element, no second pass.
void add_residual_checked(float* x, const float* y, int64_t n, int layer) {
  float nonfinite = 0.0f;
#pragma omp parallel for reduction(+ : nonfinite)
  for (int64_t i = 0; i < n; i++) {
    x[i] += y[i];
    nonfinite += x[i] * 0.0f;
  }
  if (nonfinite != 0.0f || std::isnan(nonfinite))
    fail("model.layers." + std::to_string(layer) +
         ": non-finite activation (NaN/Inf) in the layer output; the weights or quantization scales overflow fp32");
}

}  // namespace

// Queries per attention task: a block of one head's rows reads only the keys its rows can see
// (causal), so a prefill computes about half the L x L scores; blocks of heads spread over
// threads in one parallel region. Fixed, so the bits do not depend on the thread count.
constexpr int kAttendRowBlock = 64;

void attend(const ModelSpec& s, const float* q, const KVView& kv, int nseq, int ntok, int qpos0, int L, int window,
            float* out) {
  const int64_t qd = s.q_dim(), kvd = s.kv_dim(), hd = s.head_dim;
  // every query's own position must be among the keys (a row block reads keys up to it)
  if (qpos0 < 0 || qpos0 + ntok > L) fail("attend: queries at positions past the keys");
  const float scale = s.attn_scale();
  const float cap = s.attn_softcap;
  const int group = s.n_heads / s.n_kv_heads;
  const int nblk = (ntok + kAttendRowBlock - 1) / kAttendRowBlock;
  const int64_t tasks = (int64_t)nseq * s.n_heads * nblk;
  // threads pay off above ~1 MFLOP of scores and products (a few row blocks of a short prompt)
  const bool par = tasks > 1 && 4 * (int64_t)nseq * s.n_heads * ntok * L * hd >= (int64_t(1) << 20);
#pragma omp parallel if (par)
  {
    std::vector<float> scores;
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < tasks; t++) {
      const int blk = (int)(t % nblk), hh = (int)(t / nblk % s.n_heads), b = (int)(t / nblk / s.n_heads);
      const int i0 = blk * kAttendRowBlock, i1 = std::min(ntok, i0 + kAttendRowBlock), m = i1 - i0;
      // keys [k0, k1): from the first row's window start to the last row's own position
      const int k0 = window > 0 ? std::max(0, qpos0 + i0 - window + 1) : 0, k1 = std::min(L, qpos0 + i1);
      const int n = k1 - k0;
      const int kvh = hh / group;
      const float* qp = &q[((int64_t)b * ntok + i0) * qd + hh * hd];
      const float* kp = kv.k + ((int64_t)b * kv.seq_stride + k0) * kvd + kvh * hd;
      const float* vp = kv.v + ((int64_t)b * kv.seq_stride + k0) * kvd + kvh * hd;
      scores.resize((size_t)m * n);
      sgemm(false, true, m, n, hd, scale, qp, qd, kp, kvd, 0.0f, scores.data(), n);
      for (int i = 0; i < m; i++) {
        float* sr = &scores[(size_t)i * n];  // key k0 + j at sr[j]
        const int p = qpos0 + i0 + i;        // absolute position of this query
        const int lo = (window > 0 ? std::max(0, p - window + 1) : 0) - k0, hi = p - k0;  // its keys, [lo, hi]
        if (cap > 0) softcap(sr + lo, hi - lo + 1, cap);  // Gemma 2: scores soft-capped, before the mask
        softmax_range(sr, lo, hi);
        std::fill(sr, sr + lo, 0.0f);  // before the window, or after the query: masked
        std::fill(sr + hi + 1, sr + n, 0.0f);
      }
      sgemm(false, false, m, hd, n, 1.0f, scores.data(), n, vp, kvd, 0.0f,
            &out[((int64_t)b * ntok + i0) * qd + hh * hd], qd);
    }
  }
}

bool attention(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nseq, int ntok, int pos0,
               KVCache* cache, Hooks* hooks) {
  const int64_t rows = (int64_t)nseq * ntok, d = s.hidden, qd = s.q_dim(), kvd = s.kv_dim(), hd = s.head_dim;
  const SiteHook hook{hooks, layer, rows};
  std::vector<float> h((size_t)rows * d);
  rms_norm(x, w.attn_norm.ptr(), h.data(), rows, d, s.rms_eps);
  hook(Site::AttnIn, h.data(), d);
  if (hook.ends_pass(Site::AttnIn)) return true;
  std::vector<float> q((size_t)rows * qd), k((size_t)rows * kvd), v((size_t)rows * kvd);
  linears_forward(h.data(), rows, {{&w.q, q.data()}, {&w.k, k.data()}, {&w.v, v.data()}});
  if (!w.q_norm.empty()) {  // Qwen3: RMSNorm of every head of q and k, before RoPE
    rms_norm(q.data(), w.q_norm.ptr(), q.data(), rows * s.n_heads, hd, s.rms_eps);
    rms_norm(k.data(), w.k_norm.ptr(), k.data(), rows * s.n_kv_heads, hd, s.rms_eps);
  }
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
  // Keys and values attention reads: this chunk's own, or the cache after appending them.
  KVScratch scratch;
  KVView kv{k.data(), v.data(), ntok};
  const int L = cache ? pos0 + ntok : ntok;  // keys visible to the last query
  std::vector<float> att((size_t)rows * qd);
  if (cache) cache->append(layer, nseq, pos0, ntok, k.data(), v.data(), k_pre);
  if (cache && ntok <= kAttendCacheMaxTokens) {  // decode: read the stored rows in place
    attend_cache(s, q.data(), *cache, layer, nseq, ntok, pos0, s.window(layer), att.data());
  } else {
    if (cache) kv = cache->view(layer, nseq, L, &scratch);
    attend(s, q.data(), kv, nseq, ntok, cache ? pos0 : 0, L, s.window(layer), att.data());
  }
  hook(Site::OIn, att.data(), qd);
  if (hook.ends_pass(Site::OIn)) return true;
  linear_forward(att.data(), rows, w.o, h.data());
  if (!w.post_attn_norm.empty()) post_norm(s, w.post_attn_norm, w.post_norm_r1.get(), h.data(), rows);
  add_residual(x, h.data(), rows * d);
  return false;
}

void gated_activation(const ModelSpec& s, float* g, const float* u, int64_t n) {
  constexpr int64_t kBlock = 4096;  // values per task
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    const int64_t i0 = b * kBlock, i1 = std::min(n, i0 + kBlock);
    if (s.act == Act::SiLU) {  // SwiGLU
      silu_mul(g + i0, u + i0, i1 - i0);
      continue;
    }
    for (int64_t i = i0; i < i1; i++) {  // GeGLU (Gemma): GELU with the tanh approximation
      const float a = g[i], k = 0.7978845608028654f;  // sqrt(2 / pi)
      g[i] = 0.5f * a * (1.0f + std::tanh(k * (a + 0.044715f * a * a * a))) * u[i];
    }
  }
}

bool mlp(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int64_t rows, Hooks* hooks) {
  const int64_t d = s.hidden, f = s.ffn;
  const SiteHook hook{hooks, layer, rows};
  std::vector<float> h((size_t)rows * d);
  rms_norm(x, w.mlp_norm.ptr(), h.data(), rows, d, s.rms_eps);
  if (s.moe()) {
    std::vector<float> y((size_t)rows * d);
    moe_mlp(s, w, layer, h.data(), rows, hooks, y.data());
    add_residual_checked(x, y.data(), rows * d, layer);
    return false;
  }
  hook(Site::MlpIn, h.data(), d);
  if (hook.ends_pass(Site::MlpIn)) return true;
  std::vector<float> g((size_t)rows * f), u((size_t)rows * f);
  linears_forward(h.data(), rows, {{&w.gate, g.data()}, {&w.up, u.data()}});
  gated_activation(s, g.data(), u.data(), rows * f);
  hook(Site::DownIn, g.data(), f);
  if (hook.ends_pass(Site::DownIn)) return true;
  linear_forward(g.data(), rows, w.down, h.data());
  if (!w.post_mlp_norm.empty()) post_norm(s, w.post_mlp_norm, w.post_norm_r1.get(), h.data(), rows);
  add_residual_checked(x, h.data(), rows * d, layer);
  return false;
}

void decoder_layer(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nseq, int ntok, int pos0,
                   KVCache* cache, Hooks* hooks) {
  if (!cache && pos0 != 0) fail("decoder_layer: pos0 != 0 needs a KV cache");
  if (cache && pos0 + ntok > cache->max_len) fail("KV cache too small for the requested positions");
  const int64_t rows = (int64_t)nseq * ntok;
  if (attention(s, w, layer, x, nseq, ntok, pos0, cache, hooks)) return;
  mlp(s, w, layer, x, rows, hooks);
}

int layer_chunk_windows(const ModelSpec& s, int ctx) {
  int64_t width = s.ffn;
  if (s.moe()) width = std::max<int64_t>((int64_t)s.moe_ffn * std::max(1, s.top_k), s.shared_ffn);
  const int64_t per_window = 3 * std::max<int64_t>(1, width) * std::max(1, ctx) * (int64_t)sizeof(float);
  return (int)std::clamp<int64_t>(kLayerChunkScratch / per_window, 1, 8);
}

void for_each_layer_chunk(const ModelSpec& s, const LayerWeights& w, int layer, float* x, int nwin, int ctx, int chunk,
                          const std::function<Hooks*(int b0)>& hooks_for, bool keep_output) {
  if (chunk <= 0) fail("for_each_layer_chunk: chunk must be positive");
  std::vector<float> tmp;
  for (int b0 = 0; b0 < nwin; b0 += chunk) {
    const int nb = std::min(chunk, nwin - b0);
    float* xp = x + (int64_t)b0 * ctx * s.hidden;
    if (!keep_output) {
      tmp.assign(xp, xp + (int64_t)nb * ctx * s.hidden);
      xp = tmp.data();
    }
    decoder_layer(s, w, layer, xp, nb, ctx, 0, nullptr, hooks_for(b0));
  }
}

void final_logits(const Model& m, float* x, int64_t rows, float* logits, Hooks* hooks) {
  const int64_t d = m.spec.hidden;
  std::vector<float> h((size_t)rows * d);
  rms_norm(x, m.final_norm.ptr(), h.data(), rows, d, m.spec.rms_eps);
  std::copy(h.begin(), h.end(), x);
  if (hooks) hooks->on_activation(m.spec.n_layers, Site::LmHeadIn, x, rows, d);
  if (m.tied()) sgemm_nt(x, m.embed.ptr(), logits, rows, m.spec.vocab, d);
  else linear_forward(x, rows, m.lm_head, logits);  // fp32, or packed with its input quantizer
  if (const float c = m.spec.final_softcap; c > 0) softcap(logits, rows * m.spec.vocab, c);  // Gemma 2
}

std::vector<float> forward(const Model& m, const int32_t* tokens, int nseq, int ntok, KVCache* cache, Hooks* hooks,
                           LogitRows which) {
  const int64_t rows = (int64_t)nseq * ntok;
  const int pos0 = cache ? cache->len : 0;
  std::vector<float> x((size_t)rows * m.spec.hidden);
  embed_tokens(m, tokens, rows, x.data());
  for (int l = 0; l < m.spec.n_layers; l++) {
    auto w = m.layer(l);
    decoder_layer(m.spec, *w, l, x.data(), nseq, ntok, pos0, cache, hooks);
  }
  if (cache) cache->len = pos0 + ntok;
  int64_t out_rows = rows;
  if (which == LogitRows::Last && ntok > 1) {  // keep each sequence's last row, in order
    const int64_t d = m.spec.hidden;
    for (int b = 0; b < nseq; b++)
      std::copy_n(x.data() + ((int64_t)b * ntok + ntok - 1) * d, d, x.data() + (int64_t)b * d);
    out_rows = nseq;
  }
  std::vector<float> logits((size_t)out_rows * m.spec.vocab);
  final_logits(m, x.data(), out_rows, logits.data(), hooks);
  return logits;
}

}  // namespace kt
