#include "transform/rotation.h"

#include <Eigen/Dense>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <random>

#include "model/forward.h"
#include "util/error.h"

namespace kt {

namespace {

void fwht_row_ref(float* v, int n) {
  for (int h = 1; h < n; h <<= 1)
    for (int i = 0; i < n; i += 2 * h)
      for (int j = i; j < i + h; j++) {
        const float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
}

// The same butterflies as fwht_row_ref, 16 lanes at a time (n a multiple of 16), so the same
// bits: the stages h < 16 stay inside each 16-value block, where lane j takes its partner
// j ^ h by a permute and keeps a + b (bit h clear: it is a) or a - b (bit h set: it is b); the
// stages h >= 16 pair whole vectors.
__attribute__((target("avx512f"))) void fwht_row_avx512(float* v, int n) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int c = 0; c < n; c += 16) {
    __m512 x = _mm512_loadu_ps(v + c);
    for (int h = 1; h < 16; h <<= 1) {
      const __m512i hv = _mm512_set1_epi32(h);
      // (the masked form with every lane set: GCC 12 warns on the plain one's undefined source)
      const __m512 p = _mm512_mask_permutexvar_ps(x, (__mmask16)0xFFFF, _mm512_xor_si512(lane, hv), x);
      const __mmask16 second = _mm512_test_epi32_mask(lane, hv);
      x = _mm512_mask_sub_ps(_mm512_add_ps(x, p), second, p, x);
    }
    _mm512_storeu_ps(v + c, x);
  }
  for (int h = 16; h < n; h <<= 1)
    for (int i = 0; i < n; i += 2 * h)
      for (int j = i; j < i + h; j += 16) {
        const __m512 a = _mm512_loadu_ps(v + j), b = _mm512_loadu_ps(v + j + h);
        _mm512_storeu_ps(v + j, _mm512_add_ps(a, b));
        _mm512_storeu_ps(v + j + h, _mm512_sub_ps(a, b));
      }
}

}  // namespace

void fwht_rows(float* x, int64_t rows, int n) {
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  void (*row_fn)(float*, int) = avx512 && n % 16 == 0 ? &fwht_row_avx512 : &fwht_row_ref;
#pragma omp parallel for if (rows * n > 16384)
  for (int64_t r = 0; r < rows; r++) row_fn(x + r * n, n);
}

namespace {

bool is_prime(int p) {
  if (p < 2) return false;
  for (int d = 2; d * d <= p; d++)
    if (p % d == 0) return false;
  return true;
}

// q = p^k with p prime? (k <= 3 keeps irreducible-polynomial search trivial)
bool prime_power(int q, int* p, int* k) {
  for (int pp = 2; pp <= q; pp++) {
    if (!is_prime(pp) || q % pp) continue;
    int e = 0, r = q;
    while (r % pp == 0) {
      r /= pp;
      e++;
    }
    if (r != 1 || e > 3) return false;
    *p = pp;
    *k = e;
    return true;
  }
  return false;
}

// GF(p^k) with elements encoded as base-p digit vectors (integers 0..q-1).
struct GF {
  int p, k, q;
  std::vector<int> poly;  // monic irreducible of degree k: x^k + sum poly[i] x^i
  GF(int p_, int k_) : p(p_), k(k_), q((int)std::lround(std::pow(p_, k_))) {
    if (k == 1) return;
    // degree 2 or 3: irreducible iff no root in GF(p)
    for (int c = 0; c < q; c++) {
      std::vector<int> cand(k);
      for (int i = 0, t = c; i < k; i++, t /= p) cand[i] = t % p;
      bool root = false;
      for (int x = 0; x < p && !root; x++) {
        long v = 1;  // x^k
        for (int i = 0; i < k; i++) v = v * x % p;
        long xi = 1;
        for (int i = 0; i < k; i++) {
          v = (v + cand[i] * xi) % p;
          xi = xi * x % p;
        }
        root = v == 0;
      }
      if (!root) {
        poly = cand;
        return;
      }
    }
  }
  std::vector<int> digits(int a) const {
    std::vector<int> d(k);
    for (int i = 0; i < k; i++, a /= p) d[i] = a % p;
    return d;
  }
  int encode(const std::vector<int>& d) const {
    int a = 0;
    for (int i = k - 1; i >= 0; i--) a = a * p + d[i];
    return a;
  }
  int sub(int a, int b) const {
    auto x = digits(a), y = digits(b);
    for (int i = 0; i < k; i++) x[i] = ((x[i] - y[i]) % p + p) % p;
    return encode(x);
  }
  int mul(int a, int b) const {
    if (k == 1) return (int)((long)a * b % p);
    auto x = digits(a), y = digits(b);
    std::vector<int> r(2 * k - 1, 0);
    for (int i = 0; i < k; i++)
      for (int j = 0; j < k; j++) r[i + j] = (r[i + j] + x[i] * y[j]) % p;
    for (int d = 2 * k - 2; d >= k; d--) {  // reduce x^d = -sum poly[i] x^(d-k+i)
      int c = r[d];
      if (!c) continue;
      r[d] = 0;
      for (int i = 0; i < k; i++) r[d - k + i] = ((r[d - k + i] - c * poly[i]) % p + p) % p;
    }
    r.resize(k);
    return encode(r);
  }
};

// Quadratic character table chi[a] in {0, 1, -1}.
std::vector<int> quadratic_character(const GF& f) {
  std::vector<int> chi(f.q, -1);
  chi[0] = 0;
  for (int x = 1; x < f.q; x++) chi[f.mul(x, x)] = 1;
  return chi;
}

}  // namespace

std::vector<int8_t> paley_hadamard(int m) {
  if (m == 1) return {1};
  if (m == 2) return {1, 1, 1, -1};
  if (m % 4) return {};
  int p, k;
  if (prime_power(m - 1, &p, &k) && (m - 1) % 4 == 3) {  // Paley I, order q+1
    GF f(p, k);
    const int q = f.q;
    auto chi = quadratic_character(f);
    std::vector<int8_t> h((size_t)m * m);
    // H = I + S, S = [[0, 1^T], [-1, Qm]], Qm[i][j] = chi(i - j)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < m; j++) {
        int s;
        if (i == 0 && j == 0) s = 0;
        else if (i == 0) s = 1;
        else if (j == 0) s = -1;
        else s = chi[f.sub(i - 1, j - 1)];
        h[(size_t)i * m + j] = (int8_t)(s + (i == j ? 1 : 0));
      }
    (void)q;
    return h;
  }
  if (prime_power(m / 2 - 1, &p, &k) && (m / 2 - 1) % 4 == 1) {  // Paley II, order 2(q+1)
    GF f(p, k);
    auto chi = quadratic_character(f);
    const int c = m / 2;
    // C = [[0, 1^T], [1, Qm]] symmetric conference matrix; H = C (x) [[1,1],[1,-1]] + I (x) [[1,-1],[-1,-1]]
    std::vector<int8_t> h((size_t)m * m);
    for (int i = 0; i < c; i++)
      for (int j = 0; j < c; j++) {
        int cij = (i == 0 && j == 0) ? 0 : (i == 0 || j == 0) ? 1 : chi[f.sub(i - 1, j - 1)];
        const int a[2][2] = {{1, 1}, {1, -1}}, b[2][2] = {{1, -1}, {-1, -1}};
        for (int u = 0; u < 2; u++)
          for (int v = 0; v < 2; v++)
            h[(size_t)(2 * i + u) * m + 2 * j + v] = (int8_t)(cij * a[u][v] + (i == j ? b[u][v] : 0));
      }
    return h;
  }
  return {};
}

void hadamard_factor(int n, int* pow2, int* m) {
  *pow2 = 1;
  *m = 0;
  if (n <= 0) return;
  int k = 0;
  while ((n >> k) % 2 == 0) k++;
  for (int kk = k; kk >= 0; kk--) {
    int mm = n >> kk;
    if (!paley_hadamard(mm).empty()) {
      *pow2 = 1 << kk;
      *m = mm;
      return;
    }
  }
}

Rotation Rotation::random_orthogonal(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  Eigen::MatrixXd g(n, n);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) g(i, j) = nd(rng);
  Eigen::HouseholderQR<Eigen::MatrixXd> qr(g);
  Eigen::MatrixXd q = qr.householderQ();
  Eigen::MatrixXd r = qr.matrixQR().triangularView<Eigen::Upper>();
  for (int j = 0; j < n; j++)  // make the factorisation unique: diag(R) > 0
    if (r(j, j) < 0) q.col(j) *= -1;
  Tensor t({n, n});
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) t.data[(size_t)i * n + j] = (float)q(i, j);
  Rotation rot = from_matrix(std::move(t));
  rot.kind_ = "random_orthogonal";
  return rot;
}

Rotation Rotation::from_matrix(Tensor q) {
  if (q.shape.size() != 2 || q.dim(0) != q.dim(1)) fail("rotation matrix must be square");
  Rotation r;
  r.n_ = (int)q.dim(0);
  r.kind_ = "dense";
  r.q_ = std::move(q);
  r.qt_ = Tensor({r.n_, r.n_});
  for (int i = 0; i < r.n_; i++)
    for (int j = 0; j < r.n_; j++) r.qt_.data[(size_t)j * r.n_ + i] = r.q_.data[(size_t)i * r.n_ + j];
  return r;
}

Rotation Rotation::hadamard(int n, bool random_signs, uint64_t seed) {
  int p2, m;
  hadamard_factor(n, &p2, &m);
  if (m == 0) return random_orthogonal(n, seed);
  Rotation r;
  r.n_ = n;
  r.kind_ = "hadamard";
  r.pow2_ = p2;
  r.m_ = m;
  auto h = paley_hadamard(m);
  r.hm_.assign(h.begin(), h.end());
  if (random_signs) {
    std::mt19937_64 rng(seed);
    r.signs_.resize(n);
    for (auto& s : r.signs_) s = (rng() >> 63) ? 1.0f : -1.0f;
  }
  return r;
}

Rotation Rotation::block_hadamard(int n, int block) {
  if (block < 1 || (block & (block - 1)) != 0 || n <= 0 || n % block != 0)
    fail("R4 block size " + std::to_string(block) + " must be a power of two dividing " + std::to_string(n));
  Rotation r;
  r.n_ = n;
  r.kind_ = "hadamard";
  r.pow2_ = block;
  r.m_ = 1;
  r.hm_ = {1.0f};
  return r;
}

namespace {
// tmp[a][:] = sum_a' A[a'][a] v[a'][:] (A = H_m; A^T when transposing), A's entries being +-1.
// Built for AVX-512 / AVX2 / baseline and picked at load time: this loop is most of an online
// Hadamard whose order has an odd factor (e.g. R4 on ffn 704 = 16 * 44). Lanes are independent
// and c * src is exact for c = +-1, so every clone gives the same bits.
// AVX-512, P a multiple of 16 * NV (R4 on ffn 11008 = 344 * 32 takes NV = 2, on ffn 704 =
// 44 * 16 NV = 1): AO = 16 / NV outputs x NV vectors of 16 columns per pass, so each a' step
// loads NV source vectors and AO coefficients for 16 FMAs (the loop below does one load pair
// per FMA). Per output the sum runs
// over a' in the same order and c * src is exact (c = +-1), so the bits are the loop's.
template <int NV>
__attribute__((target("avx512f"))) void hadamard_blocks_wide(const float* A, const float* v, float* tmp, int M, int P,
                                                            bool transpose) {
  constexpr int AO = 16 / NV, W = 16 * NV;
  auto coef = [&](int a, int a2) { return transpose ? A[(size_t)a * M + a2] : A[(size_t)a2 * M + a]; };
  for (int b0 = 0; b0 < P; b0 += W) {
    int a = 0;
    for (; a + AO <= M; a += AO) {
      __m512 acc[AO][NV];
      for (int i = 0; i < AO; i++)
        for (int j = 0; j < NV; j++) acc[i][j] = _mm512_setzero_ps();
      for (int a2 = 0; a2 < M; a2++) {
        const float* src = v + (size_t)a2 * P + b0;
        __m512 s[NV];
        for (int j = 0; j < NV; j++) s[j] = _mm512_loadu_ps(src + 16 * j);
        for (int i = 0; i < AO; i++) {
          const __m512 c = _mm512_set1_ps(coef(a + i, a2));
          for (int j = 0; j < NV; j++) acc[i][j] = _mm512_fmadd_ps(c, s[j], acc[i][j]);
        }
      }
      for (int i = 0; i < AO; i++)
        for (int j = 0; j < NV; j++) _mm512_storeu_ps(tmp + (size_t)(a + i) * P + b0 + 16 * j, acc[i][j]);
    }
    for (; a < M; a++) {
      __m512 acc[NV];
      for (int j = 0; j < NV; j++) acc[j] = _mm512_setzero_ps();
      for (int a2 = 0; a2 < M; a2++) {
        const __m512 c = _mm512_set1_ps(coef(a, a2));
        for (int j = 0; j < NV; j++) acc[j] = _mm512_fmadd_ps(c, _mm512_loadu_ps(v + (size_t)a2 * P + b0 + 16 * j), acc[j]);
      }
      for (int j = 0; j < NV; j++) _mm512_storeu_ps(tmp + (size_t)a * P + b0 + 16 * j, acc[j]);
    }
  }
}

__attribute__((target_clones("avx512f", "avx2", "default"))) void hadamard_blocks(const float* A, const float* v,
                                                                                float* tmp, int M, int P,
                                                                                bool transpose) {
  if (P % 16 == 0) {  // 16 columns at a time: the running sums stay in registers over a'
    for (int b0 = 0; b0 < P; b0 += 16)
      for (int a = 0; a < M; a++) {
        float acc[16] = {};
        for (int a2 = 0; a2 < M; a2++) {
          const float c = transpose ? A[(size_t)a * M + a2] : A[(size_t)a2 * M + a];
          const float* src = v + (size_t)a2 * P + b0;
          for (int b = 0; b < 16; b++) acc[b] += c * src[b];
        }
        std::copy(acc, acc + 16, tmp + (size_t)a * P + b0);
      }
    return;
  }
  std::fill(tmp, tmp + (size_t)M * P, 0.0f);
  for (int a = 0; a < M; a++) {
    float* dst = tmp + (size_t)a * P;
    for (int a2 = 0; a2 < M; a2++) {
      const float c = transpose ? A[(size_t)a * M + a2] : A[(size_t)a2 * M + a];
      const float* src = v + (size_t)a2 * P;
      for (int b = 0; b < P; b++) dst[b] += c * src[b];
    }
  }
}
}  // namespace

void Rotation::apply_hadamard(float* x, int64_t rows, bool transpose) const {
  const float norm = 1.0f / std::sqrt((float)(m_ * pow2_));  // one diagonal block's order
  if (!transpose && !signs_.empty())
    for (int64_t r = 0; r < rows; r++)
      for (int j = 0; j < n_; j++) x[r * n_ + j] *= signs_[j];
  // x viewed as [m][P] per row; y = x (A (x) B): FWHT on each length-P block (B symmetric),
  // then y[a] = sum_a' A[a'][a] x[a'] (A^T applied across blocks; A itself for the transpose).
  fwht_rows(x, rows * (n_ / pow2_), pow2_);  // n_ / pow2_ = m_ unless block-diagonal (then m_ = 1)
  if (m_ > 1) {
    const int P = pow2_, M = m_;
    static const bool wide = __builtin_cpu_supports("avx512f");
    // one row (the fused R4 path calls this per row from inside a parallel loop): no team
#pragma omp parallel if (rows > 1)
    {
      std::vector<float> tmp((size_t)M * P);
#pragma omp for
      for (int64_t r = 0; r < rows; r++) {
        float* v = x + r * n_;
        if (P % 64 == 0 && wide) hadamard_blocks_wide<4>(hm_.data(), v, tmp.data(), M, P, transpose);
        else if (P % 32 == 0 && wide) hadamard_blocks_wide<2>(hm_.data(), v, tmp.data(), M, P, transpose);
        else if (P % 16 == 0 && wide) hadamard_blocks_wide<1>(hm_.data(), v, tmp.data(), M, P, transpose);
        else hadamard_blocks(hm_.data(), v, tmp.data(), M, P, transpose);
        std::copy(tmp.begin(), tmp.end(), v);
      }
    }
  }
  for (int64_t i = 0; i < rows * n_; i++) x[i] *= norm;
  if (transpose && !signs_.empty())
    for (int64_t r = 0; r < rows; r++)
      for (int j = 0; j < n_; j++) x[r * n_ + j] *= signs_[j];
}

// x (rows x n) <- x M^T for a dense n x n M, a block of rows at a time: the copy the product
// needs stays small whatever the number of rows (an embedding of 128k rows would otherwise
// double for the time of the product).
static void apply_dense_rows(float* x, int64_t rows, int n, const float* mt) {
  const int64_t block = std::max<int64_t>(1, std::min<int64_t>(rows, (int64_t{1} << 22) / n));
  std::vector<float> tmp((size_t)block * n);
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t nr = std::min(block, rows - r0);
    float* xr = x + r0 * n;
    std::copy(xr, xr + nr * n, tmp.begin());
    sgemm_nt(tmp.data(), mt, xr, nr, n, n);
  }
}

void Rotation::apply(float* x, int64_t rows) const {
  if (kind_ == "hadamard") return apply_hadamard(x, rows, false);
  apply_dense_rows(x, rows, n_, qt_.ptr());  // x Q = x (Q^T)^T
}

void Rotation::apply_inverse(float* x, int64_t rows) const {
  if (kind_ == "hadamard") return apply_hadamard(x, rows, true);
  apply_dense_rows(x, rows, n_, q_.ptr());  // x Q^T
}

Tensor Rotation::matrix() const {
  Tensor t({n_, n_});
  for (int i = 0; i < n_; i++) t.data[(size_t)i * n_ + i] = 1.0f;
  apply(t.ptr(), n_);  // rows of I times Q = Q
  return t;
}

}  // namespace kt
