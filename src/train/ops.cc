#include "train/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/gemm.h"
#include "model/rope.h"

namespace kt::train {

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
                  const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)K,
              alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

// ---- RMSNorm ------------------------------------------------------------------------------

template <class T>
void rmsnorm_forward(const T* x, T* y, T* inv, int64_t rows, int64_t d, double eps) {
#pragma omp parallel for if (rows * d > 32768)
  for (int64_t r = 0; r < rows; r++) {
    const T* xr = x + r * d;
    double ss = 0;
    for (int64_t j = 0; j < d; j++) ss += (double)xr[j] * xr[j];
    const T iv = (T)(1.0 / std::sqrt(ss / d + eps));
    inv[r] = iv;
    for (int64_t j = 0; j < d; j++) y[r * d + j] = xr[j] * iv;
  }
}

template <class T>
void rmsnorm_backward(const T* dy, const T* y, const T* inv, T* dx, int64_t rows, int64_t d) {
  // y = x * inv with inv = (mean(x^2) + eps)^-1/2: dy/dx = inv (I - y y^T / d)
#pragma omp parallel for if (rows * d > 32768)
  for (int64_t r = 0; r < rows; r++) {
    const T* g = dy + r * d;
    const T* yr = y + r * d;
    double dot = 0;
    for (int64_t j = 0; j < d; j++) dot += (double)g[j] * yr[j];
    const T m = (T)(dot / d);
    for (int64_t j = 0; j < d; j++) dx[r * d + j] += inv[r] * (g[j] - yr[j] * m);
  }
}

// ---- linear -------------------------------------------------------------------------------

template <class T>
void linear_forward(const T* x, const T* W, const T* b, T* y, int64_t rows, int64_t in, int64_t out) {
  gemm<T>(false, true, rows, out, in, 1, x, in, W, in, 0, y, out);
  if (!b) return;
#pragma omp parallel for if (rows * out > 32768)
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < out; j++) y[r * out + j] += b[j];
}

template <class T>
void linear_backward(const T* dy, const T* x, const T* W, T* dx, T* dW, T* db, int64_t rows, int64_t in,
                     int64_t out) {
  if (dx) gemm<T>(false, false, rows, in, out, 1, dy, out, W, in, 1, dx, in);
  if (dW) gemm<T>(true, false, out, in, rows, 1, dy, out, x, in, 0, dW, in);
  if (db) {
    std::fill(db, db + out, T(0));
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < out; j++) db[j] += dy[r * out + j];
  }
}

// ---- RoPE ---------------------------------------------------------------------------------

template <class T>
RopeTable<T> rope_table(const ModelSpec& s, int ntok) {
  RopeTable<T> t;
  t.half = s.head_dim / 2;
  t.rotate_half = s.rope_style == RopeStyle::RotateHalf;
  const RopeFreqs fr = rope_freqs(s, ntok);
  t.cos.resize((size_t)ntok * t.half);
  t.sin.resize((size_t)ntok * t.half);
  for (int p = 0; p < ntok; p++)
    for (int i = 0; i < t.half; i++) {
      const float ang = (float)p * (float)fr.inv_freq[i];  // fp32 angle, as model/rope.cc
      t.cos[(size_t)p * t.half + i] = (T)((float)std::cos((double)ang) * (float)fr.attention_factor);
      t.sin[(size_t)p * t.half + i] = (T)((float)std::sin((double)ang) * (float)fr.attention_factor);
    }
  return t;
}

namespace {
// Rotates the pairs of every head by (c, sign * s): sign -1 is the transpose.
template <class T>
void rope_apply(const RopeTable<T>& t, T* x, int nseq, int ntok, int nheads, T sign) {
  const int hd = 2 * t.half;
  const int64_t width = (int64_t)nheads * hd;
#pragma omp parallel for collapse(2) if ((int64_t)nseq * ntok * width > 32768)
  for (int b = 0; b < nseq; b++)
    for (int p = 0; p < ntok; p++) {
      const T* c = &t.cos[(size_t)p * t.half];
      const T* s = &t.sin[(size_t)p * t.half];
      for (int h = 0; h < nheads; h++) {
        T* v = x + ((int64_t)b * ntok + p) * width + (int64_t)h * hd;
        for (int i = 0; i < t.half; i++) {
          const int i0 = t.rotate_half ? i : 2 * i, i1 = t.rotate_half ? i + t.half : 2 * i + 1;
          const T a = v[i0], bb = v[i1], sn = sign * s[i];
          v[i0] = a * c[i] - bb * sn;
          v[i1] = a * sn + bb * c[i];
        }
      }
    }
}
}  // namespace

template <class T>
void rope_forward(const RopeTable<T>& t, T* x, int nseq, int ntok, int nheads) {
  rope_apply(t, x, nseq, ntok, nheads, T(1));
}
template <class T>
void rope_backward(const RopeTable<T>& t, T* dx, int nseq, int ntok, int nheads) {
  rope_apply(t, dx, nseq, ntok, nheads, T(-1));
}

// ---- attention ----------------------------------------------------------------------------

namespace {
inline int window_lo(int p, int window) { return window > 0 ? std::max(0, p - window + 1) : 0; }
}  // namespace

template <class T>
void attention_forward(const AttnShape& a, const T* q, const T* k, const T* v, T* out, T* P) {
  const int hd = a.head_dim, T_ = a.ntok, group = a.n_heads / a.n_kv;
  const int64_t qd = (int64_t)a.n_heads * hd, kvd = (int64_t)a.n_kv * hd;
#pragma omp parallel for collapse(2) if ((int64_t)T_ * T_ * hd > 32768)
  for (int b = 0; b < a.nseq; b++)
    for (int h = 0; h < a.n_heads; h++) {
      const int kh = h / group;
      T* Ph = P + ((int64_t)b * a.n_heads + h) * T_ * T_;
      for (int i = 0; i < T_; i++) {
        const T* qi = q + ((int64_t)b * T_ + i) * qd + (int64_t)h * hd;
        T* pr = Ph + (int64_t)i * T_;
        const int lo = window_lo(i, a.window);
        T mx = -std::numeric_limits<T>::infinity();
        for (int j = 0; j < T_; j++) {
          if (j < lo || j > i) {
            pr[j] = 0;
            continue;
          }
          const T* kj = k + ((int64_t)b * T_ + j) * kvd + (int64_t)kh * hd;
          T s = 0;
          for (int e = 0; e < hd; e++) s += qi[e] * kj[e];
          pr[j] = s * (T)a.scale;
          mx = std::max(mx, pr[j]);
        }
        double sum = 0;
        for (int j = lo; j <= i; j++) {
          pr[j] = std::exp(pr[j] - mx);
          sum += pr[j];
        }
        const T inv = (T)(1.0 / sum);
        T* o = out + ((int64_t)b * T_ + i) * qd + (int64_t)h * hd;
        std::fill(o, o + hd, T(0));
        for (int j = lo; j <= i; j++) {
          pr[j] *= inv;
          const T* vj = v + ((int64_t)b * T_ + j) * kvd + (int64_t)kh * hd;
          for (int e = 0; e < hd; e++) o[e] += pr[j] * vj[e];
        }
      }
    }
}

template <class T>
void attention_backward(const AttnShape& a, const T* dout, const T* q, const T* k, const T* v, const T* P, T* dq,
                        T* dk, T* dv) {
  const int hd = a.head_dim, T_ = a.ntok, group = a.n_heads / a.n_kv;
  const int64_t qd = (int64_t)a.n_heads * hd, kvd = (int64_t)a.n_kv * hd;
  std::fill(dq, dq + (int64_t)a.nseq * T_ * qd, T(0));
  std::fill(dk, dk + (int64_t)a.nseq * T_ * kvd, T(0));
  std::fill(dv, dv + (int64_t)a.nseq * T_ * kvd, T(0));
  // One thread per (sequence, kv head): the query heads of a group write the same dk/dv rows.
#pragma omp parallel for collapse(2) if ((int64_t)T_ * T_ * hd > 32768)
  for (int b = 0; b < a.nseq; b++)
    for (int kh = 0; kh < a.n_kv; kh++) {
      std::vector<T> dp(T_);
      for (int h = kh * group; h < (kh + 1) * group; h++) {
        const T* Ph = P + ((int64_t)b * a.n_heads + h) * T_ * T_;
        for (int i = 0; i < T_; i++) {
          const T* pr = Ph + (int64_t)i * T_;
          const T* go = dout + ((int64_t)b * T_ + i) * qd + (int64_t)h * hd;
          const T* qi = q + ((int64_t)b * T_ + i) * qd + (int64_t)h * hd;
          T* gq = dq + ((int64_t)b * T_ + i) * qd + (int64_t)h * hd;
          const int lo = window_lo(i, a.window);
          // dP_ij = dout_i . v_j ; dv_j += P_ij dout_i
          double pdp = 0;
          for (int j = lo; j <= i; j++) {
            const T* vj = v + ((int64_t)b * T_ + j) * kvd + (int64_t)kh * hd;
            T* gv = dv + ((int64_t)b * T_ + j) * kvd + (int64_t)kh * hd;
            T s = 0;
            for (int e = 0; e < hd; e++) {
              s += go[e] * vj[e];
              gv[e] += pr[j] * go[e];
            }
            dp[j] = s;
            pdp += (double)pr[j] * s;
          }
          // softmax: dS_ij = P_ij (dP_ij - sum_l P_il dP_il); scores = scale q.k
          for (int j = lo; j <= i; j++) {
            const T ds = pr[j] * (dp[j] - (T)pdp) * (T)a.scale;
            const T* kj = k + ((int64_t)b * T_ + j) * kvd + (int64_t)kh * hd;
            T* gk = dk + ((int64_t)b * T_ + j) * kvd + (int64_t)kh * hd;
            for (int e = 0; e < hd; e++) {
              gq[e] += ds * kj[e];
              gk[e] += ds * qi[e];
            }
          }
        }
      }
    }
}

// ---- SwiGLU -------------------------------------------------------------------------------

template <class T>
void swiglu_forward(const T* g, const T* u, T* h, int64_t n) {
#pragma omp parallel for if (n > 32768)
  for (int64_t i = 0; i < n; i++) h[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
}

template <class T>
void swiglu_backward(const T* dh, const T* g, const T* u, T* dg, T* du, int64_t n) {
#pragma omp parallel for if (n > 32768)
  for (int64_t i = 0; i < n; i++) {
    const T sg = T(1) / (T(1) + std::exp(-g[i]));  // sigmoid; silu' = s (1 + g (1 - s))
    du[i] = dh[i] * g[i] * sg;
    dg[i] = dh[i] * u[i] * sg * (T(1) + g[i] * (T(1) - sg));
  }
}

// ---- cross-entropy ------------------------------------------------------------------------

template <class T>
double cross_entropy(T* logits, const int32_t* targets, int64_t rows, int64_t vocab, bool grad, double gscale) {
  std::vector<double> row_loss(rows, 0.0);  // summed in order below: the same bits for any thread count
#pragma omp parallel for if (rows * vocab > 32768)
  for (int64_t r = 0; r < rows; r++) {
    T* z = logits + r * vocab;
    const int32_t t = targets[r];
    if (t < 0) {
      if (grad) std::fill(z, z + vocab, T(0));
      continue;
    }
    T mx = *std::max_element(z, z + vocab);
    double sum = 0;
    for (int64_t j = 0; j < vocab; j++) sum += std::exp((double)(z[j] - mx));
    row_loss[r] = std::log(sum) - (double)(z[t] - mx);
    if (!grad) continue;
    for (int64_t j = 0; j < vocab; j++) z[j] = (T)(std::exp((double)(z[j] - mx)) / sum * gscale);
    z[t] -= (T)gscale;
  }
  double total = 0;
  for (double l : row_loss) total += l;
  return total;
}

// ---- quantizers ---------------------------------------------------------------------------

template <>
void fake_quant_ste_forward<float>(float* x, int64_t rows, int64_t cols, const QuantSpec& q) {
  if (q.enabled()) fake_quant_ref(x, rows, cols, q);
}
template <>
void fake_quant_ste_forward<double>(double* x, int64_t rows, int64_t cols, const QuantSpec& q) {
  if (!q.enabled()) return;
  std::vector<float> f(x, x + rows * cols);
  fake_quant_ref(f.data(), rows, cols, q);
  std::copy(f.begin(), f.end(), x);
}

#define KT_INSTANTIATE(T)                                                                                    \
  template void rmsnorm_forward<T>(const T*, T*, T*, int64_t, int64_t, double);                              \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, T*, int64_t, int64_t);                      \
  template void linear_forward<T>(const T*, const T*, const T*, T*, int64_t, int64_t, int64_t);               \
  template void linear_backward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, int64_t);      \
  template RopeTable<T> rope_table<T>(const ModelSpec&, int);                                                 \
  template void rope_forward<T>(const RopeTable<T>&, T*, int, int, int);                                      \
  template void rope_backward<T>(const RopeTable<T>&, T*, int, int, int);                                     \
  template void attention_forward<T>(const AttnShape&, const T*, const T*, const T*, T*, T*);                 \
  template void attention_backward<T>(const AttnShape&, const T*, const T*, const T*, const T*, const T*, T*, \
                                      T*, T*);                                                               \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t);                                           \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t);                            \
  template double cross_entropy<T>(T*, const int32_t*, int64_t, int64_t, bool, double);
KT_INSTANTIATE(float)
KT_INSTANTIATE(double)
#undef KT_INSTANTIATE

}  // namespace kt::train
