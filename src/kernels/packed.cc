#include "kernels/packed.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "core/tensor.h"
#include "util/error.h"

namespace kt {

const char* kernel_name(Kernel k) {
  switch (k) {
    case Kernel::Scalar: return "scalar";
    case Kernel::Avx2: return "avx2";
    case Kernel::Vnni: return "avx512-vnni";
    case Kernel::Amx: return "avx512-vnni+amx";
  }
  return "?";
}

bool kernel_supported(Kernel k) {
  __builtin_cpu_init();
  switch (k) {
    case Kernel::Scalar: return true;
    case Kernel::Avx2: return __builtin_cpu_supports("avx2");
    case Kernel::Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
    case Kernel::Amx: return kernel_supported(Kernel::Vnni) && amx_usable();
  }
  return false;
}

static int g_forced = -1;

void set_active_kernel(Kernel k) {
  if (!kernel_supported(k)) fail(std::string("kernel ") + kernel_name(k) + " not supported on this CPU");
  g_forced = (int)k;
}

Kernel active_kernel() {
  if (g_forced >= 0) return (Kernel)g_forced;
  static Kernel k = [] {
    const char* e = std::getenv("KURTAIL_KERNEL");
    if (e && *e) {
      std::string s = e;
      Kernel want = s == "scalar" ? Kernel::Scalar
                    : s == "avx2" ? Kernel::Avx2
                    : s == "vnni" ? Kernel::Vnni
                    : s == "amx"  ? Kernel::Amx
                                  : (Kernel)-1;
      if ((int)want < 0) fail("KURTAIL_KERNEL", quote(s) + " is not one of scalar, avx2, vnni, amx");
      if (!kernel_supported(want)) fail("KURTAIL_KERNEL", s + ": this CPU does not support it");
      return want;
    }
    if (kernel_supported(Kernel::Amx)) return Kernel::Amx;
    if (kernel_supported(Kernel::Vnni)) return Kernel::Vnni;
    if (kernel_supported(Kernel::Avx2)) return Kernel::Avx2;
    return Kernel::Scalar;
  }();
  return k;
}

PackedWeight pack_weights_ref(QType t, const int8_t* q, int N, int K, int group, const float* scales) {
  const WTypeTraits& tt = wtype_traits(t);
  if (!tt.packed()) fail(std::string("packed weights: type ") + tt.name + " is not a packed type");
  PackedWeight p;
  p.type = t;
  p.N = N;
  p.K = K;
  p.Np = (N + kTileN - 1) / kTileN * kTileN;
  p.Kp = (K + kStepK - 1) / kStepK * kStepK;
  if (group <= 0 || group >= K) group = p.Kp;
  if (group % kStepK || p.Kp % group) fail("packed weights: group must be a multiple of 8 dividing K");
  p.group = group;
  const int G = p.Kp / group;
  p.scales.assign((size_t)N * G, 0.0f);
  std::copy(scales, scales + (size_t)N * G, p.scales.begin());
  const int steps_k = p.Kp / kStepK;
  p.data.assign(tt.packed_bytes(N, K), 0);
  int out_of_range = 0;  // tiles in parallel (a 7B layer is 200M weights); the failure after them
#pragma omp parallel for schedule(static) reduction(| : out_of_range) if ((int64_t)p.Np * p.Kp >= (1 << 20))
  for (int tile = 0; tile < p.Np / kTileN; tile++)
    for (int k8 = 0; k8 < steps_k; k8++) {
      int8_t codes[kTileN * kStepK];
      for (int c = 0; c < kTileN; c++)
        for (int j = 0; j < kStepK; j++) {
          const int n = tile * kTileN + c, k = k8 * kStepK + j;
          int v = (n < N && k < K) ? q[(size_t)n * K + k] : 0;  // padding is zero weights
          if (v < tt.qmin || v > tt.qmax) out_of_range = 1, v = 0;
          codes[c * kStepK + j] = (int8_t)v;
        }
      tt.pack_step(codes, &p.data[((size_t)tile * steps_k + k8) * tt.step_bytes]);
    }
  if (out_of_range) fail(std::string("packed weights: ") + tt.name + " value out of range");
  finalize_packed(p);
  return p;
}

void finalize_packed(PackedWeight& p) {
  const int G = p.groups();
  p.scales_gn.assign((size_t)G * p.Np, 0.0f);
  for (int n = 0; n < p.N; n++)
    for (int g = 0; g < G; g++) p.scales_gn[(size_t)g * p.Np + n] = p.scales[(size_t)n * G + g];
  p.offsets_gn.clear();
  if (p.type != QType::Q8) return;
  std::vector<int8_t> q((size_t)p.N * p.K);
  unpack_weights_ref(p, q.data());
  p.offsets_gn.assign((size_t)G * p.Np, 0);
#pragma omp parallel for schedule(static) if ((int64_t)p.N * p.K >= (1 << 20))
  for (int n = 0; n < p.N; n++)  // each row its own column of offsets_gn
    for (int k = 0; k < p.K; k++) p.offsets_gn[(size_t)(k / p.group) * p.Np + n] += 128 * q[(size_t)n * p.K + k];
}

void unpack_weights_ref(const PackedWeight& p, int8_t* q) {
  const WTypeTraits& tt = wtype_traits(p.type);
  const int steps_k = p.Kp / kStepK;
#pragma omp parallel for schedule(static) if ((int64_t)p.Np * p.Kp >= (1 << 20))
  for (int tile = 0; tile < p.Np / kTileN; tile++)
    for (int k8 = 0; k8 < steps_k; k8++) {
      int8_t codes[kTileN * kStepK];
      tt.unpack_step(&p.data[((size_t)tile * steps_k + k8) * tt.step_bytes], codes);
      for (int c = 0; c < kTileN; c++)
        for (int j = 0; j < kStepK; j++) {
          const int n = tile * kTileN + c, k = k8 * kStepK + j;
          if (n < p.N && k < p.K) q[(size_t)n * p.K + k] = codes[c * kStepK + j];
        }
    }
}

// One row of quantize_acts_ref; the AVX2 / AVX-512 rows (kernels*.cc) have the same signature.
static void quantize_row_ref(const float* r, int K, int Kp, int bits, float clip, int group, int8_t* qr, float* scale,
                             int32_t* gsum) {
  const int qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
  float amax = 0;
  for (int k = 0; k < K; k++) amax = std::max(amax, std::fabs(r[k]));
  const float s = act_scale(amax, clip, qmax);
  *scale = s;
  std::fill(gsum, gsum + Kp / group, 0);
  for (int k = 0; k < K; k++) {
    qr[k] = act_code(r[k], s, qmin, qmax);
    gsum[k / group] += qr[k];
  }
  std::memset(qr + K, 0, (size_t)(Kp - K));
}

void quantize_row_avx512(const float* r, int K, int Kp, int bits, float clip, int group, int8_t* qr, float* scale,
                         int32_t* gsum);
void quantize_row_avx2(const float* r, int K, int Kp, int bits, float clip, int group, int8_t* qr, float* scale,
                       int32_t* gsum);
using QuantizeRowFn = decltype(&quantize_row_ref);

// Rows in parallel through `row_fn`, each first copied and transformed when `pre` is given.
static void quantize_rows(QuantizeRowFn row_fn, const float* x, int M, int K, int Kp, int bits, float clip, int group,
                          QuantizedActs* out, const RowTransform* pre) {
  if (pre && pre->size() != K) fail("quantize_acts: row transform size differs from K");
  out->M = M;
  out->K = K;
  out->Kp = Kp;
  out->bits = bits;
  if (group <= 0) group = Kp;
  const int G = Kp / group;
  out->q.resize((size_t)M * Kp);
  out->scale.resize(M);
  out->gsum.resize((size_t)M * G);
  // ~16k values is a few microseconds of work: enough to pay for waking the team
#pragma omp parallel if (M > 1 && (int64_t)M * K >= 16384)
  {
    std::vector<float> row(pre ? K : 0);
#pragma omp for
    for (int m = 0; m < M; m++) {
      const float* r = x + (size_t)m * K;
      if (pre) {
        std::copy(r, r + K, row.begin());
        pre->apply_row(row.data());
        r = row.data();
      }
      row_fn(r, K, Kp, bits, clip, group, &out->q[(size_t)m * Kp], &out->scale[m], &out->gsum[(size_t)m * G]);
    }
  }
}

void quantize_acts_ref(const float* x, int M, int K, int Kp, int bits, float clip, int group, QuantizedActs* out) {
  quantize_rows(&quantize_row_ref, x, M, K, Kp, bits, clip, group, out, nullptr);
}

void quantize_acts(Kernel kern, const float* x, int M, int K, int Kp, int bits, float clip, int group,
                   QuantizedActs* out, const RowTransform* pre) {
  const bool avx512 = (kern == Kernel::Vnni || kern == Kernel::Amx) && kernel_supported(Kernel::Vnni);
  QuantizeRowFn row_fn = avx512                                          ? &quantize_row_avx512
                         : kern == Kernel::Avx2 && kernel_supported(Kernel::Avx2) ? &quantize_row_avx2
                                                                                  : &quantize_row_ref;
  quantize_rows(row_fn, x, M, K, Kp, bits, clip, group, out, pre);
}

std::shared_ptr<const PackedWeight> load_packed_weight(const TensorSource& src, const std::string& name, int N, int K,
                                                       Tensor* qscale, int* qbits) {
  const TensorInfo& qi = src.info(name + ".qweight");
  const TensorInfo& si = src.info(name + ".qscale");
  Tensor qb = src.load(name + ".qbits");
  const std::optional<WType> type = qb.numel() == 1 ? wtype_for_bits(qb.data[0]) : std::nullopt;
  if (!type) fail(qi.file, quote(name + ".qbits") + " must be " + packed_wtype_bits_list());
  if (qi.dtype != DType::U8) fail(qi.file, quote(name + ".qweight") + " must be U8");
  *qscale = to_f32(si);
  if (qscale->shape.size() != 2 || qscale->dim(0) != N || qscale->dim(1) <= 0)
    fail(si.file, quote(name + ".qscale") + " has a bad shape");
  auto p = std::make_shared<PackedWeight>();
  p->type = *type;
  *qbits = wtype_traits(*type).bits;
  p->N = N;
  p->K = K;
  p->Np = (N + kTileN - 1) / kTileN * kTileN;
  p->Kp = (K + kStepK - 1) / kStepK * kStepK;
  const int G = (int)qscale->dim(1);
  if (p->Kp % G) fail(si.file, quote(name + ".qscale") + " group count does not divide K");
  p->group = p->Kp / G;
  if (p->group % kStepK) fail(si.file, quote(name + ".qscale") + " implies a group size that is not a multiple of 8");
  const size_t want = wtype_traits(p->type).packed_bytes(N, K);
  if (qi.nbytes != want)
    fail(qi.file, quote(name + ".qweight") + " has " + std::to_string(qi.nbytes) + " bytes, expected " + std::to_string(want));
  p->data.assign(qi.data, qi.data + qi.nbytes);
  p->scales = qscale->data;
  finalize_packed(*p);  // kernel tables are derived, never read from disk
  return p;
}

void dequantize_packed_rows(const PackedWeight& p, int n0, int n1, float* w) {
  if (n0 < 0 || n0 % kTileN || n1 < n0 || n1 > p.N) fail("internal: dequantize_packed_rows: bad row range");
  const WTypeTraits& tt = wtype_traits(p.type);
  const int steps_k = p.Kp / kStepK, G = p.groups(), tile0 = n0 / kTileN, tile1 = (n1 + kTileN - 1) / kTileN;
#pragma omp parallel for schedule(static) if ((int64_t)(n1 - n0) * p.K >= (1 << 20))
  for (int tile = tile0; tile < tile1; tile++)
    for (int k8 = 0; k8 < steps_k; k8++) {
      int8_t codes[kTileN * kStepK];
      tt.unpack_step(&p.data[((size_t)tile * steps_k + k8) * tt.step_bytes], codes);
      for (int c = 0; c < kTileN; c++) {
        const int n = tile * kTileN + c;
        if (n >= n1) break;
        for (int j = 0; j < kStepK; j++) {
          const int k = k8 * kStepK + j;
          if (k < p.K)
            w[(size_t)(n - n0) * p.K + k] = tt.dequantize(codes[c * kStepK + j], p.scales[(size_t)n * G + k / p.group]);
        }
      }
    }
}

std::vector<float> dequantize_packed(const PackedWeight& p) {
  std::vector<float> w((size_t)p.N * p.K);
  dequantize_packed_rows(p, 0, p.N, w.data());
  return w;
}

void gemm_acc_scalar(const QuantizedActs& a, const PackedWeight& w, int32_t* acc);
void gemm_acc_avx2(const QuantizedActs& a, const PackedWeight& w, int32_t* acc);
void gemm_acc_vnni(const QuantizedActs& a, const PackedWeight& w, int32_t* acc);

static void check_gemm_args(Kernel k, const QuantizedActs& a, const PackedWeight& w) {
  if (a.Kp != w.Kp) fail("gemm: activation and weight K differ");
  if (!kernel_supported(k)) fail(std::string("gemm: kernel ") + kernel_name(k) + " not supported on this CPU");
}

void gemm_acc(Kernel k, const QuantizedActs& a, const PackedWeight& w, int32_t* acc) {
  check_gemm_args(k, a, w);
  switch (k) {
    case Kernel::Scalar: return gemm_acc_scalar(a, w, acc);
    case Kernel::Avx2: return gemm_acc_avx2(a, w, acc);
    case Kernel::Vnni:
    case Kernel::Amx: return gemm_acc_vnni(a, w, acc);  // integer sums: the tile GEMM only serves gemm_q
  }
}

void gemm_f32_vnni(const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y);
void gemm_f32_amx(const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y);

void gemm_q(Kernel k, const QuantizedActs& a, const PackedWeight& w, const float* bias, float* y) {
  if (k == Kernel::Amx) {
    check_gemm_args(k, a, w);
    return amx_fits(a, w) ? gemm_f32_amx(a, w, bias, y) : gemm_f32_vnni(a, w, bias, y);
  }
  if (k == Kernel::Vnni) {
    check_gemm_args(k, a, w);
    return gemm_f32_vnni(a, w, bias, y);
  }
  std::vector<int32_t> acc((size_t)a.M * w.Np * w.groups());
  gemm_acc(k, a, w, acc.data());
  gemm_epilogue_ref(a, w, acc.data(), bias, y);
}

void gemm_epilogue_ref(const QuantizedActs& a, const PackedWeight& w, const int32_t* acc, const float* bias, float* y) {
  const int G = w.groups();
#pragma omp parallel for if ((int64_t)a.M * w.N > 4096)
  for (int m = 0; m < a.M; m++)
    for (int n = 0; n < w.N; n++) {
      const int32_t* ac = &acc[((size_t)m * w.Np + n) * G];
      const float* sc = &w.scales[(size_t)n * G];
      float s = 0;
      for (int g = 0; g < G; g++) s += sc[g] * (float)ac[g];
      y[(size_t)m * w.N + n] = a.scale[m] * s + (bias ? bias[n] : 0.0f);
    }
}

}  // namespace kt
