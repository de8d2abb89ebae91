#include "quant/gptq.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "kernels/gemm.h"
#include "kernels/wtype.h"
#include "quant/methods.h"
#include "quant/options.h"
#include "quant/recipe.h"
#include "util/error.h"

namespace kt {

void Hessian::add(const float* x, int64_t rows) {
  if (rows == 0) return;
  // float X^T X per chunk (fast; deterministic fixed tiles, the upper triangle's only),
  // accumulated in the Hessian's precision
  if (f64_) accumulate_gram(x, rows, n_, h_.data());
  else accumulate_gram(x, rows, n_, h32_.data());
  count_ += rows;
}

void rtn_quantize(Linear& l, const QuantSpec& ws) {
  if (!ws.enabled()) return;
  const int64_t rows = l.out(), cols = l.in();
  const int64_t g = ws.gran == Granularity::PerGroup && ws.group > 0 ? ws.group : cols;
  // Scales are recorded (l.qscale / l.qbits: w = code * scale) exactly for specs with a packed
  // weight type (kernels/wtype.h); quant/validate_model.cc expects them for the same specs.
  const bool rec = wtype_for(ws).has_value() && cols % g == 0;
  if (rec) {
    l.qscale = Tensor({rows, cols / g});
    l.qbits = ws.bits;
  }
  if (ws.gran == Granularity::PerTensor) {
    fake_quant_ref(l.w.ptr(), rows, cols, ws);
    return;
  }
#pragma omp parallel for
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
      float* p = l.w.ptr() + r * cols + c0;
      const int64_t n = std::min(g, cols - c0);
      QParams qp = find_params_ref(p, n, ws);
      for (int64_t k = 0; k < n; k++) p[k] = dequantize_level(quantize_level(p[k], qp, ws), qp);
      if (rec) l.qscale.data[r * (cols / g) + c0 / g] = qp.scale;
    }
}

namespace {
// H <- H[perm][:, perm] in place (no second n x n buffer: 924 MiB at a 7B down_proj): each
// row's columns through one row of scratch, then the rows along the permutation's cycles.
template <typename T>
void permute_symmetric(T* H, int64_t n, const std::vector<int64_t>& perm) {
#pragma omp parallel
  {
    std::vector<T> tmp((size_t)n);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; r++) {
      T* row = H + r * n;
      for (int64_t j = 0; j < n; j++) tmp[(size_t)j] = row[perm[(size_t)j]];
      std::copy(tmp.begin(), tmp.end(), row);
    }
  }
  // new row i is old row perm[i]: follow each cycle i <- perm[i] <- perm[perm[i]] ...
  std::vector<char> done((size_t)n, 0);
  std::vector<T> first((size_t)n);
  for (int64_t i = 0; i < n; i++) {
    if (done[(size_t)i]) continue;
    std::copy(H + i * n, H + (i + 1) * n, first.begin());
    int64_t k = i;
    while (perm[(size_t)k] != i) {
      std::copy(H + perm[(size_t)k] * n, H + (perm[(size_t)k] + 1) * n, H + k * n);
      done[(size_t)k] = 1;
      k = perm[(size_t)k];
    }
    std::copy(first.begin(), first.end(), H + k * n);
    done[(size_t)k] = 1;
  }
}

// The Hessian's sums H (n x n, summed over `samples` rows): H / samples with dead inputs set to
// 1, permuted (act_order), dampened, then turned into U in place.
std::vector<double>& factor_storage(GptqFactor& f, double) { return f.U; }
std::vector<float>& factor_storage(GptqFactor& f, float) { return f.U32; }

template <typename T>
GptqFactor factor_sums(std::vector<T> sums, int64_t cols, int64_t samples, const GptqOptions& opt) {
  GptqFactor f;
  f.n = cols;
  if ((int64_t)sums.size() != cols * cols) fail("internal: GPTQ Hessian already released");
  const T inv_n = T(1.0 / (double)std::max<int64_t>(1, samples));
  std::vector<T>& H = factor_storage(f, T());  // becomes U in place
  H = std::move(sums);
  for (T& v : H) v *= inv_n;
  auto h = [&](int64_t i, int64_t j) -> T& { return H[(size_t)i * cols + j]; };
  // dead inputs (never active): H_ii = 1 and that column of W zero
  f.dead.assign(cols, 0);
  for (int64_t j = 0; j < cols; j++)
    if (h(j, j) == 0) f.dead[j] = 1, h(j, j) = 1;
  f.perm.resize(cols);
  std::iota(f.perm.begin(), f.perm.end(), 0);
  if (opt.act_order) {
    std::stable_sort(f.perm.begin(), f.perm.end(), [&](int64_t a, int64_t b) { return h(a, a) > h(b, b); });
    permute_symmetric(H.data(), cols, f.perm);
  }
  double mean_diag = 0;
  for (int64_t i = 0; i < cols; i++) mean_diag += h(i, i);
  mean_diag /= (double)cols;
  const T damp = T(opt.percdamp * mean_diag);
  for (int64_t i = 0; i < cols; i++) h(i, i) += damp;
  // U: upper Cholesky factor of H^-1 (GPTQ's formulation), in place of H
  if (!inverse_upper_cholesky(H.data(), cols))
    fail("--percdamp", std::string("GPTQ Hessian is not positive definite even after dampening (raise --percdamp") +
                           (sizeof(T) == sizeof(float) ? ", or factor it in f64: --gptq-precision f64)" : ")"));
  return f;
}
}  // namespace

GptqFactor gptq_factor(const Hessian& hs, const GptqOptions& opt) {
  return hs.f64() ? factor_sums(hs.data(), hs.n(), hs.samples(), opt) : factor_sums(hs.data32(), hs.n(), hs.samples(), opt);
}

GptqFactor gptq_factor(Hessian&& hs, const GptqOptions& opt) {
  const int64_t n = hs.n(), samples = hs.samples();
  return hs.f64() ? factor_sums(hs.take(), n, samples, opt) : factor_sums(hs.take32(), n, samples, opt);
}

void gptq_quantize(Linear& l, const Hessian& hs, const QuantSpec& ws, const GptqOptions& opt) {
  if (!ws.enabled()) return;
  if (hs.n() != l.in()) fail("GPTQ: Hessian size does not match the layer input");
  gptq_quantize(l, gptq_factor(hs, opt), ws, opt);
}

namespace {
void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
            const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  dgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void gemm_t(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
            const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Layout: W [rows, cols] row-major with its columns in quantization order (perm), in the
// factor's precision T. In f32 that is the layer's own storage, permuted in place: no second copy
// of the weights beside the factor (at a 7B down_proj the copy was 172 MiB at the phase's peak).
// Within a block every row is independent, so a row's block tile (B values) stays in L1 while
// its columns are quantized and their errors spread; the update of the columns after the block
// is one gemm. Threads take fixed row ranges: the bits are the same for any thread count.
template <typename T>
void gptq_quantize_t(Linear& l, const GptqFactor& f, const std::vector<T>& U, const QuantSpec& ws,
                     const GptqOptions& opt) {
  const int64_t rows = l.out(), cols = l.in();
  const std::vector<int64_t>& perm = f.perm;
  float* out = l.w.data.data();
  std::vector<T> own;  // f64: the working copy in double
  T* W = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    W = out;
  } else {
    own.resize((size_t)rows * cols);
    W = own.data();
  }
  bool identity = true;
  for (int64_t i = 0; i < cols; i++) identity = identity && perm[i] == i;
  // columns into quantization order, dead ones zero (row by row through a row buffer: in place in f32)
#pragma omp parallel
  {
    std::vector<T> tmp(identity ? 0 : cols);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const float* src = out + r * cols;
      T* dst = W + r * cols;
      if (identity) {
        for (int64_t i = 0; i < cols; i++) dst[i] = f.dead[i] ? T(0) : T(src[i]);
      } else {
        for (int64_t i = 0; i < cols; i++) tmp[i] = f.dead[perm[i]] ? T(0) : T(src[perm[i]]);
        std::copy(tmp.begin(), tmp.end(), dst);
      }
    }
  }
  auto u = [&](int64_t i, int64_t j) { return U[(size_t)i * cols + j]; };

  const bool grouped = ws.gran == Granularity::PerGroup && ws.group > 0;
  std::vector<QParams> params(rows);
  // Quantizer params of row r over columns [c0, c0 + n) as they are now (the full row unless grouped).
  auto row_params = [&](int64_t r, int64_t c0, int64_t n, std::vector<float>& tmp) {
    const T* w = W + r * cols + c0;
    if constexpr (std::is_same_v<T, float>) {
      params[r] = find_params_ref(w, n, ws);
    } else {
      tmp.assign(w, w + n);
      params[r] = find_params_ref(tmp.data(), n, ws);
    }
  };
  if (ws.gran == Granularity::PerTensor) {
    std::vector<float> tmp;
    row_params(0, 0, rows * cols, tmp);  // the whole matrix as one row
    std::fill(params.begin() + 1, params.end(), params[0]);
  } else if (!grouped) {
#pragma omp parallel
    {
      std::vector<float> tmp;
#pragma omp for schedule(dynamic, 64)
      for (int64_t r = 0; r < rows; r++) row_params(r, 0, cols, tmp);
    }
  }

  const int64_t G = grouped ? (cols + ws.group - 1) / ws.group : 1;
  const bool rec = wtype_for(ws).has_value() && (!grouped || (cols % ws.group == 0 && !opt.act_order));
  std::vector<float> scales(rec ? rows * G : 0);
  if (rec && !grouped)
    for (int64_t r = 0; r < rows; r++) scales[r] = params[r].scale;
  const int64_t B = std::max(1, opt.block);
  constexpr int64_t kRowChunk = 256;  // rows per thread task: fixed, so the bits do not depend on threads
  const int64_t eb = std::min(B, cols);
  std::vector<T> Err((size_t)rows * eb);  // [rows, eb]: the block's scaled errors
  for (int64_t i1 = 0; i1 < cols; i1 += B) {
    const int64_t i2 = std::min(i1 + B, cols), cnt = i2 - i1;
#pragma omp parallel
    {
      std::vector<float> tmp;
#pragma omp for schedule(dynamic, 1)
      for (int64_t r0 = 0; r0 < rows; r0 += kRowChunk) {
        for (int64_t r = r0; r < std::min(rows, r0 + kRowChunk); r++) {
          T* w = W + r * cols;
          T* e = &Err[(size_t)r * eb];
          for (int64_t i = 0; i < cnt; i++) {
            const int64_t c = i1 + i;
            if (grouped && c % ws.group == 0) {
              row_params(r, c, std::min<int64_t>(ws.group, cols - c), tmp);
              if (rec) scales[r * G + c / ws.group] = params[r].scale;
            }
            const T wv = w[c];
            const float q = dequantize_level(quantize_level((float)wv, params[r], ws), params[r]);
            w[c] = T(q);  // exact dequantized value (float of q * scale); column c is not read again
            const T ei = (wv - T(q)) / u(c, c);
            e[i] = ei;
            // spread this column's error over the block's later columns of the row
            const T* uc = &U[(size_t)c * cols];
            for (int64_t j = c + 1; j < i2; j++) w[j] -= ei * uc[j];
          }
        }
      }
    }
    // and over the columns after the block: W[:, i2:] -= Err U[i1:i2, i2:]
    if (i2 < cols)
      gemm_t(false, false, rows, cols - i2, cnt, T(-1), Err.data(), eb, &U[(size_t)i1 * cols + i2], cols, T(1),
             W + i2, cols);
  }
  // the codes' values back into the layer, in the original column order
#pragma omp parallel
  {
    std::vector<float> tmp(identity ? 0 : cols);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      const T* src = W + r * cols;
      float* dst = out + r * cols;
      if (identity) {
        if constexpr (!std::is_same_v<T, float>)
          for (int64_t i = 0; i < cols; i++) dst[i] = (float)src[i];
      } else {
        for (int64_t i = 0; i < cols; i++) tmp[perm[i]] = (float)src[i];
        std::copy(tmp.begin(), tmp.end(), dst);
      }
    }
  }
  if (rec) {
    l.qscale = Tensor({rows, G});
    l.qscale.data = scales;
    l.qbits = ws.bits;
  }
}
}  // namespace

void gptq_quantize(Linear& l, const GptqFactor& f, const QuantSpec& ws, const GptqOptions& opt) {
  if (!ws.enabled()) return;
  const int64_t cols = l.in();
  const size_t nn = (size_t)cols * (size_t)cols;
  if (f.n != cols || (f.U.size() != nn && f.U32.size() != nn)) fail("GPTQ: Hessian size does not match the layer input");
  if (f.U.size() == nn) gptq_quantize_t(l, f, f.U, ws, opt);
  else gptq_quantize_t(l, f, f.U32, ws, opt);
}

}  // namespace kt

// GPTQ's settings in recipe.json ("gptq": {...}) and on the CLI, declared once (quant/options.h).
// The pipeline reads them through QuantizeOptions::gptq (cli/cmd_quantize.cc copies them).
namespace kt {
namespace {
void visit_gptq(Recipe& r, OptionVisitor& v) {
  v.real_f32(r.percdamp, 0.01, {"percdamp", "--percdamp", "GPTQ dampening (fraction of the mean Hessian diagonal)"},
             {0, 1});
  v.integer(r.gptq_block, 128, {"block", nullptr, "GPTQ lazy-batch block size"}, {1, kMaxCount});
  v.flag(r.act_order, false, {"act_order", "--act-order", "GPTQ: quantize columns by decreasing Hessian diagonal"});
  v.named_bool(r.gptq_f64, false,
               {"f64", "--gptq-precision",
                "GPTQ's Hessian, its factor and the working weights in f32, as the reference GPTQ keeps them, or in f64 "
                "(twice the memory beside the layer)"},
               "f64", "f32");
}
}  // namespace
extern const OptionSection kGptqOptions = {"gptq", visit_gptq, /*in_every_recipe=*/true};
}  // namespace kt
