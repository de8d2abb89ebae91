#include "train/rotated_decoder.h"

#include <algorithm>

#include "train/ops.h"
#include "transform/fuse.h"
#include "util/error.h"

namespace kt::train {

std::string unsupported(const ModelSpec& s) {
  if (s.moe()) return "mixture-of-experts layers";
  if (s.arch == "qwen3") return "Qwen3's per-head q/k norms";
  if (s.act != Act::SiLU) return "a GeGLU MLP (Gemma)";
  if (s.arch == "gemma2" || s.attn_softcap > 0 || s.final_softcap > 0) return "Gemma 2's post-norms and soft-caps";
  return "";
}

namespace {

template <class T>
std::vector<T> to(const Tensor& t) {
  return std::vector<T>(t.data.begin(), t.data.end());
}

// A fixed online rotation x <- x Q (or x Q^T) on rows of its size: the fast transform in float,
// the dense matrix in double (the tests' finite differences need every digit).
template <class T>
struct OnlineRot {
  std::shared_ptr<const Rotation> rot;
  std::vector<T> dense;  // double only
  explicit operator bool() const { return (bool)rot; }
  void set(std::shared_ptr<const Rotation> r) {
    rot = std::move(r);
    if constexpr (!std::is_same_v<T, float>)
      if (rot) dense = to<T>(rot->matrix());
  }
  void apply(T* x, int64_t rows, bool transpose) const {
    if constexpr (std::is_same_v<T, float>) {
      transpose ? rot->apply_inverse(x, rows) : rot->apply(x, rows);
    } else {
      const int n = rot->n();
      std::vector<T> y((size_t)rows * n);
      gemm<T>(false, transpose, rows, n, n, 1, x, n, dense.data(), n, 0, y.data(), n);
      std::copy(y.begin(), y.end(), x);
    }
  }
};

template <class T>
struct Lin {
  std::vector<T> w, b;  // w [out, in]; b empty: none
  int64_t out = 0, in = 0;
  const T* bias() const { return b.empty() ? nullptr : b.data(); }
};

template <class T>
Lin<T> lin(const Linear& l) {
  return {to<T>(l.w), to<T>(l.b), l.out(), l.in()};
}

template <class T>
struct Layer {
  Lin<T> q, k, v, o, gate, up, down;
};

// One layer's activations kept by the forward for the backward.
template <class T>
struct Saved {
  std::vector<T> h1, inv1, a1;   // normed attention input, 1/rms, after its quantizer
  std::vector<T> q, k, v, P;     // as attention read them (RoPE, R3, K/V quantizers applied)
  std::vector<T> ao;             // o_proj input after its quantizer
  std::vector<T> h2, inv2, a2;   // normed MLP input, 1/rms, after its quantizer
  std::vector<T> g, u, dn;       // gate/up outputs, down_proj input (R4, quantizer applied)
};

// The fused, quantized weights of one evaluation.
template <class T>
struct Fused {
  Lin<T> q, k, v, o, gate, up, down;
};

}  // namespace

template <class T>
struct RotatedDecoder<T>::Impl {
  const ModelSpec& s;
  LossQuant q;
  OnlineRot<T> r3, r4;
  std::vector<T> embed, head;  // [vocab, hidden]; head has the final norm folded
  std::vector<Layer<T>> layers;

  Impl(const ModelSpec& spec, const Model& m, LossQuant lq) : s(spec), q(std::move(lq)) {
    r3.set(q.r3);
    r4.set(q.r4);
    if (q.r3 && q.r3->n() != s.head_dim) fail("SpinQuant: R3 size differs from head_dim");
    if (q.r4 && q.r4->n() != s.ffn) fail("SpinQuant: R4 size differs from the MLP width");
    embed = to<T>(m.embed);
    head = to<T>(m.head());
    const int64_t d = s.hidden;
    for (int64_t i = 0; i < s.vocab; i++)
      for (int64_t j = 0; j < d; j++) head[i * d + j] *= (T)m.final_norm.data[j];
    for (int l = 0; l < s.n_layers; l++) {
      LayerWeights w = *m.layer(l);
      if (!w.q_norm.empty() || w.has_post_norms() || !w.experts.empty())
        fail("SpinQuant: layer " + std::to_string(l) + " has q/k norms, post-norms or experts");
      if (w.q.packed || w.o.packed) fail("SpinQuant: the model is already quantized (packed weights)");
      fold_layer_norms(w);
      if (q.r4) fuse_down_input(w, {*q.r4});
      layers.push_back({lin<T>(w.q), lin<T>(w.k), lin<T>(w.v), lin<T>(w.o), lin<T>(w.gate), lin<T>(w.up),
                        lin<T>(w.down)});
    }
  }

  // ---- fusing the rotations (what quant/pipeline does to the weights) ---------------------

  // W' = W R1 (input side), then RTN.
  void fuse_in(const Lin<T>& a, const T* r1, Lin<T>& f) const {
    f.out = a.out, f.in = a.in, f.b = a.b;
    f.w.resize(a.w.size());
    gemm<T>(false, false, a.out, a.in, a.in, 1, a.w.data(), a.in, r1, a.in, 0, f.w.data(), a.in);
  }
  // W' = R1^T A (output side; A = W, or W_o with R2 on its input), b' = b R1.
  void fuse_out(const std::vector<T>& A, const Lin<T>& a, const T* r1, Lin<T>& f) const {
    const int64_t d = s.hidden;
    f.out = a.out, f.in = a.in;
    f.w.resize(a.w.size());
    gemm<T>(true, false, d, a.in, d, 1, r1, d, A.data(), a.in, 0, f.w.data(), a.in);
    f.b.assign(a.b.size(), T(0));
    if (!a.b.empty()) gemm<T>(false, false, 1, d, d, 1, a.b.data(), d, r1, d, 0, f.b.data(), d);
  }
  // W_v'' = blockdiag(R2)^T (W_v R1), b_v'' = b_v R2 per head; av = W_v R1 is kept for the backward.
  void fuse_v(const Lin<T>& a, const T* r1, const T* r2, Lin<T>& f, std::vector<T>& av) const {
    const int hd = s.head_dim;
    Lin<T> t;
    fuse_in(a, r1, t);
    av = t.w;
    f.out = a.out, f.in = a.in, f.b = a.b;
    f.w.resize(a.w.size());
    for (int h = 0; h < s.n_kv_heads; h++) {
      gemm<T>(true, false, hd, a.in, hd, 1, r2, hd, av.data() + (int64_t)h * hd * a.in, a.in, 0,
              f.w.data() + (int64_t)h * hd * a.in, a.in);
      if (!a.b.empty())
        gemm<T>(false, false, 1, hd, hd, 1, a.b.data() + h * hd, hd, r2, hd, 0, f.b.data() + h * hd, hd);
    }
  }
  // C = W_o blockdiag(R2) (each head's columns times R2), then the output side of R1.
  void fuse_o(const Lin<T>& a, const T* r1, const T* r2, Lin<T>& f, std::vector<T>& c) const {
    const int hd = s.head_dim;
    c.assign(a.w.size(), T(0));
    for (int h = 0; h < s.n_heads; h++)
      gemm<T>(false, false, a.out, hd, hd, 1, a.w.data() + (int64_t)h * hd, a.in, r2, hd, 0,
              c.data() + (int64_t)h * hd, a.in);
    fuse_out(c, a, r1, f);
  }
  void quantize(Lin<T>& f) const { fake_quant_ste_forward(f.w.data(), f.out, f.in, q.weight); }

  // ---- the chain rule from a fused weight's gradient to the rotations -------------------

  // W' = W R1: dR1 += W^T dW'.
  void chain_in(const Lin<T>& a, const T* dw, T* dr1) const {
    gemm<T>(true, false, a.in, a.in, a.out, 1, a.w.data(), a.in, dw, a.in, 1, dr1, a.in);
  }
  // W' = R1^T A, b' = b R1: dR1 += A dW'^T + b^T db'.
  void chain_out(const std::vector<T>& A, const Lin<T>& a, const T* dw, const T* db, T* dr1) const {
    const int64_t d = s.hidden;
    gemm<T>(false, true, d, d, a.in, 1, A.data(), a.in, dw, a.in, 1, dr1, d);
    if (!a.b.empty()) gemm<T>(true, false, d, d, 1, 1, a.b.data(), d, db, d, 1, dr1, d);
  }
  // W_v'' = B^T A_v: dA = B dW'' (per head R2 dW''_h), dR1 += W_v^T dA, dR2 += A_h dW''_h^T + b_h^T db_h.
  void chain_v(const Lin<T>& a, const std::vector<T>& av, const T* r2, const T* dw, const T* db, T* dr1,
               T* dr2) const {
    const int hd = s.head_dim;
    std::vector<T> dA(a.w.size());
    for (int h = 0; h < s.n_kv_heads; h++) {
      const int64_t off = (int64_t)h * hd * a.in;
      gemm<T>(false, false, hd, a.in, hd, 1, r2, hd, dw + off, a.in, 0, dA.data() + off, a.in);
      gemm<T>(false, true, hd, hd, a.in, 1, av.data() + off, a.in, dw + off, a.in, 1, dr2, hd);
      if (!a.b.empty()) gemm<T>(true, false, hd, hd, 1, 1, a.b.data() + h * hd, hd, db + h * hd, hd, 1, dr2, hd);
    }
    chain_in(a, dA.data(), dr1);
  }
  // W_o'' = R1^T C, C_h = W_o,h R2: dR1 += C dW''^T, dC = R1 dW'', dR2 += W_o,h^T dC_h.
  void chain_o(const Lin<T>& a, const std::vector<T>& c, const T* r1, const T* dw, const T* db, T* dr1,
               T* dr2) const {
    const int hd = s.head_dim;
    const int64_t d = s.hidden;
    chain_out(c, a, dw, db, dr1);
    std::vector<T> dC(a.w.size());
    gemm<T>(false, false, d, a.in, d, 1, r1, d, dw, a.in, 0, dC.data(), a.in);
    for (int h = 0; h < s.n_heads; h++)
      gemm<T>(true, false, hd, hd, a.out, 1, a.w.data() + (int64_t)h * hd, a.in, dC.data() + (int64_t)h * hd, a.in,
              1, dr2, hd);
  }

  // ---- forward and backward -------------------------------------------------------------

  double run(const RotationParams<T>& r, const int32_t* tokens, int nseq, int ntok, RotationParams<T>* grad,
             std::vector<T>* logits_out) {
    const int64_t d = s.hidden, rows = (int64_t)nseq * ntok, qd = s.q_dim(), kvd = s.kv_dim(), ff = s.ffn,
                  V = s.vocab;
    const int hd = s.head_dim, L = s.n_layers;
    if ((int64_t)r.r1.size() != d * d || (int)r.r2.size() != L) fail("SpinQuant: rotation sizes differ from the model");
    for (const auto& r2 : r.r2)
      if ((int64_t)r2.size() != (int64_t)hd * hd) fail("SpinQuant: an R2 is not head_dim x head_dim");
    if (grad && (grad->r1.size() != r.r1.size() || grad->r2.size() != r.r2.size()))
      fail("SpinQuant: gradient sizes differ from the rotations");
    const T* r1 = r.r1.data();
    const RopeTable<T> rope = rope_table<T>(s, ntok);
    auto site = [&](Site st) -> const QuantSpec& { return q.site[(int)st]; };

    // fused weights of every layer (kept: the backward multiplies by them)
    std::vector<Fused<T>> fw(L);
    std::vector<std::vector<T>> av(L), oc(L);
    for (int l = 0; l < L; l++) {
      const Layer<T>& a = layers[l];
      Fused<T>& f = fw[l];
      const T* r2 = r.r2[l].data();
      fuse_in(a.q, r1, f.q);
      fuse_in(a.k, r1, f.k);
      fuse_v(a.v, r1, r2, f.v, av[l]);
      fuse_o(a.o, r1, r2, f.o, oc[l]);
      fuse_in(a.gate, r1, f.gate);
      fuse_in(a.up, r1, f.up);
      fuse_out(a.down.w, a.down, r1, f.down);
      for (Lin<T>* p : {&f.q, &f.k, &f.v, &f.o, &f.gate, &f.up, &f.down}) quantize(*p);
    }
    Lin<T> fh{head, {}, V, d};
    Lin<T> hf;
    fuse_in(fh, r1, hf);
    if (q.quant_lm_head) fake_quant_ste_forward(hf.w.data(), hf.out, hf.in, q.head_weight);

    // embedding: x0 = embed_scale * E[tok] R1
    std::vector<T> eg((size_t)rows * d), x((size_t)rows * d);
    for (int64_t i = 0; i < rows; i++) {
      if (tokens[i] < 0 || tokens[i] >= V) fail("SpinQuant: token id out of range");
      for (int64_t j = 0; j < d; j++) eg[i * d + j] = embed[tokens[i] * d + j] * (T)s.embed_scale;
    }
    gemm<T>(false, false, rows, d, d, 1, eg.data(), d, r1, d, 0, x.data(), d);

    // RMSNorm of the residual stream x (y, 1/rms kept for the backward), then the site's quantizer (a)
    auto normed_input = [&](const std::vector<T>& xs, Site st, std::vector<T>& y, std::vector<T>& inv,
                            std::vector<T>& a) {
      y.resize(rows * d), inv.resize(rows);
      rmsnorm_forward(xs.data(), y.data(), inv.data(), rows, d, s.rms_eps);
      a = y;
      fake_quant_ste_forward(a.data(), rows, d, site(st));
    };
    std::vector<Saved<T>> sv(L);
    std::vector<T> tmp((size_t)rows * std::max<int64_t>({d, qd, ff}));
    for (int l = 0; l < L; l++) {
      Saved<T>& c = sv[l];
      const Fused<T>& f = fw[l];
      const AttnShape as{nseq, ntok, s.n_heads, s.n_kv_heads, hd, s.window(l), s.attn_scale()};
      normed_input(x, Site::AttnIn, c.h1, c.inv1, c.a1);
      c.q.resize(rows * qd), c.k.resize(rows * kvd), c.v.resize(rows * kvd);
      linear_forward(c.a1.data(), f.q.w.data(), f.q.bias(), c.q.data(), rows, d, qd);
      linear_forward(c.a1.data(), f.k.w.data(), f.k.bias(), c.k.data(), rows, d, kvd);
      linear_forward(c.a1.data(), f.v.w.data(), f.v.bias(), c.v.data(), rows, d, kvd);
      rope_forward(rope, c.q.data(), nseq, ntok, s.n_heads);
      rope_forward(rope, c.k.data(), nseq, ntok, s.n_kv_heads);
      if (r3) {
        r3.apply(c.q.data(), rows * s.n_heads, false);
        r3.apply(c.k.data(), rows * s.n_kv_heads, false);
      }
      fake_quant_ste_forward(c.q.data(), rows, qd, site(Site::Q));
      fake_quant_ste_forward(c.k.data(), rows, kvd, site(Site::K));
      fake_quant_ste_forward(c.v.data(), rows, kvd, site(Site::V));
      c.P.resize((size_t)nseq * s.n_heads * ntok * ntok);
      c.ao.resize(rows * qd);
      attention_forward(as, c.q.data(), c.k.data(), c.v.data(), c.ao.data(), c.P.data());
      fake_quant_ste_forward(c.ao.data(), rows, qd, site(Site::OIn));
      linear_forward(c.ao.data(), f.o.w.data(), f.o.bias(), tmp.data(), rows, qd, d);
      for (int64_t i = 0; i < rows * d; i++) x[i] += tmp[i];

      normed_input(x, Site::MlpIn, c.h2, c.inv2, c.a2);
      c.g.resize(rows * ff), c.u.resize(rows * ff), c.dn.resize(rows * ff);
      linear_forward(c.a2.data(), f.gate.w.data(), f.gate.bias(), c.g.data(), rows, d, ff);
      linear_forward(c.a2.data(), f.up.w.data(), f.up.bias(), c.u.data(), rows, d, ff);
      swiglu_forward(c.g.data(), c.u.data(), c.dn.data(), rows * ff);
      if (r4) r4.apply(c.dn.data(), rows, false);
      fake_quant_ste_forward(c.dn.data(), rows, ff, site(Site::DownIn));
      linear_forward(c.dn.data(), f.down.w.data(), f.down.bias(), tmp.data(), rows, ff, d);
      for (int64_t i = 0; i < rows * d; i++) x[i] += tmp[i];
    }
    std::vector<T> hfin, invf, af;
    normed_input(x, Site::LmHeadIn, hfin, invf, af);
    std::vector<T> logits((size_t)rows * V);
    linear_forward(af.data(), hf.w.data(), (const T*)nullptr, logits.data(), rows, d, V);
    if (logits_out) {
      *logits_out = std::move(logits);
      return 0;
    }
    std::vector<int32_t> targets(rows);
    for (int b = 0; b < nseq; b++)
      for (int t = 0; t < ntok; t++) targets[(size_t)b * ntok + t] = t + 1 < ntok ? tokens[(size_t)b * ntok + t + 1] : -1;
    const int64_t scored = (int64_t)nseq * (ntok - 1);
    if (scored <= 0) fail("SpinQuant: sequences need at least 2 tokens");
    const double total = cross_entropy(logits.data(), targets.data(), rows, V, grad != nullptr, 1.0 / scored);
    if (!grad) return total / scored;

    // ---- backward ---------------------------------------------------------------------
    T* dr1 = grad->r1.data();
    // lm_head: dlogits (in `logits`) -> d(af) = dlogits W_h'; dR1 += (dlogits W_h)^T af
    std::vector<T> dx((size_t)rows * d, T(0)), dh((size_t)rows * d);
    linear_backward(logits.data(), af.data(), hf.w.data(), dx.data(), (T*)nullptr, (T*)nullptr, rows, d, V);
    gemm<T>(false, false, rows, d, V, 1, logits.data(), V, head.data(), d, 0, dh.data(), d);
    gemm<T>(true, false, d, d, rows, 1, dh.data(), d, af.data(), d, 1, dr1, d);
    logits = {};
    std::fill(dh.begin(), dh.end(), T(0));
    rmsnorm_backward(dx.data(), hfin.data(), invf.data(), dh.data(), rows, d);
    dx.swap(dh);  // dx: gradient of the residual stream after the last layer

    std::vector<T> dw, db, dy((size_t)rows * std::max(qd, ff)), dy2((size_t)rows * std::max(qd, ff)),
        dk((size_t)rows * kvd), dv((size_t)rows * kvd), da((size_t)rows * d);
    // One fused linear's backward: dx += dy W' (dx null: not wanted), and its weight and bias
    // gradients into dw, db for the chain rule to the rotations.
    auto backward = [&](const Lin<T>& f, const T* dyp, const T* xin, T* dxp) {
      dw.resize(f.w.size());
      db.resize(f.out);
      linear_backward(dyp, xin, f.w.data(), dxp, dw.data(), db.data(), rows, f.in, f.out);
    };
    for (int l = L - 1; l >= 0; l--) {
      Saved<T>& c = sv[l];
      const Fused<T>& f = fw[l];
      const Layer<T>& a = layers[l];
      T* dr2 = grad->r2[l].data();
      const T* r2 = r.r2[l].data();
      const AttnShape as{nseq, ntok, s.n_heads, s.n_kv_heads, hd, s.window(l), s.attn_scale()};
      // MLP: x += down(R4 q(silu(gate a2) * up a2))
      std::fill(dy.begin(), dy.begin() + rows * ff, T(0));
      backward(f.down, dx.data(), c.dn.data(), dy.data());
      chain_out(a.down.w, a.down, dw.data(), db.data(), dr1);
      if (r4) r4.apply(dy.data(), rows, true);  // STE through the quantizer, then R4^T
      swiglu_backward(dy.data(), c.g.data(), c.u.data(), dy.data(), dy2.data(), rows * ff);  // dy: dg, dy2: du
      std::fill(da.begin(), da.end(), T(0));
      backward(f.gate, dy.data(), c.a2.data(), da.data());
      chain_in(a.gate, dw.data(), dr1);
      backward(f.up, dy2.data(), c.a2.data(), da.data());
      chain_in(a.up, dw.data(), dr1);
      rmsnorm_backward(da.data(), c.h2.data(), c.inv2.data(), dx.data(), rows, d);
      c.g = {}, c.u = {}, c.dn = {}, c.h2 = {}, c.a2 = {};

      // attention: x += o(q(attend(q, k, v)))
      std::fill(dy.begin(), dy.begin() + rows * qd, T(0));
      backward(f.o, dx.data(), c.ao.data(), dy.data());
      chain_o(a.o, oc[l], r1, dw.data(), db.data(), dr1, dr2);
      attention_backward(as, dy.data(), c.q.data(), c.k.data(), c.v.data(), c.P.data(), dy2.data(), dk.data(),
                         dv.data());  // dy2: dq
      c.P = {};
      if (r3) {
        r3.apply(dy2.data(), rows * s.n_heads, true);
        r3.apply(dk.data(), rows * s.n_kv_heads, true);
      }
      rope_backward(rope, dy2.data(), nseq, ntok, s.n_heads);
      rope_backward(rope, dk.data(), nseq, ntok, s.n_kv_heads);
      std::fill(da.begin(), da.end(), T(0));
      backward(f.q, dy2.data(), c.a1.data(), da.data());
      chain_in(a.q, dw.data(), dr1);
      backward(f.k, dk.data(), c.a1.data(), da.data());
      chain_in(a.k, dw.data(), dr1);
      backward(f.v, dv.data(), c.a1.data(), da.data());
      chain_v(a.v, av[l], r2, dw.data(), db.data(), dr1, dr2);
      rmsnorm_backward(da.data(), c.h1.data(), c.inv1.data(), dx.data(), rows, d);
      sv[l] = {};
    }
    // embedding: dR1 += eg^T dx0
    gemm<T>(true, false, d, d, rows, 1, eg.data(), d, dx.data(), d, 1, dr1, d);
    return total / scored;
  }
};

template <class T>
RotatedDecoder<T>::RotatedDecoder(const Model& m, LossQuant q) : s_(m.spec) {
  if (std::string why = unsupported(s_); !why.empty()) fail("SpinQuant does not support " + why + " yet");
  impl_ = std::make_unique<Impl>(s_, m, std::move(q));
}
template <class T>
RotatedDecoder<T>::~RotatedDecoder() = default;

template <class T>
double RotatedDecoder<T>::loss(const RotationParams<T>& r, const int32_t* tokens, int nseq, int ntok,
                               RotationParams<T>* grad) {
  return impl_->run(r, tokens, nseq, ntok, grad, nullptr);
}

template <class T>
std::vector<T> RotatedDecoder<T>::logits(const RotationParams<T>& r, const int32_t* tokens, int nseq, int ntok) {
  std::vector<T> out;
  impl_->run(r, tokens, nseq, ntok, nullptr, &out);
  return out;
}

template class RotatedDecoder<float>;
template class RotatedDecoder<double>;

}  // namespace kt::train
