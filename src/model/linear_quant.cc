#include "model/linear_quant.h"

#include <cmath>

#include "kernels/wtype.h"
#include "util/error.h"

namespace kt {

LinearQuant check_linear_quant(const TensorSource& src, const std::string& name, int64_t out, int64_t in) {
  LinearQuant q;
  const std::string qs = name + ".qscale", qb = name + ".qbits", qw = name + ".qweight";
  if (!src.has(qs)) {
    for (const std::string& n : {qb, qw})
      if (src.has(n)) fail(src.info(n).file, "tensor " + quote(n) + " without " + quote(qs));
    return q;
  }
  const TensorInfo& si = src.info(qs);
  if (si.dtype != DType::F32 && si.dtype != DType::F16)
    fail(si.file, "tensor " + quote(qs) + " has dtype " + dtype_name(si.dtype) + "; scales are F32 or F16");
  if (si.shape.size() != 2 || si.shape[0] != out || si.shape[1] <= 0 || in % si.shape[1] != 0)
    fail(si.file, "tensor " + quote(qs) + " has shape " + shape_str(si.shape) + "; expected [" + std::to_string(out) +
                      ", G] with G dividing " + std::to_string(in));
  if (!src.has(qb)) fail(si.file, "missing tensor " + quote(qb) + " (" + quote(qs) + " needs it)");
  const TensorInfo& bi = src.info(qb);
  if (bi.dtype != DType::F32 || bi.shape != std::vector<int64_t>{1})
    fail(bi.file, "tensor " + quote(qb) + " must be F32 [1], is " + dtype_name(bi.dtype) + " " + shape_str(bi.shape));
  const float bits = to_f32(bi).data[0];
  const std::optional<WType> type = wtype_for_bits(bits);
  if (!type)
    fail(bi.file, "tensor " + quote(qb) + " is " + fmt_num(bits) + "; weight bits are " + packed_wtype_bits_list());
  const WTypeTraits& tt = wtype_traits(*type);
  q.qbits = tt.bits;
  q.qscale = to_f32(si);
  check_finite(q.qscale, si.file, qs);
  for (size_t i = 0; i < q.qscale.data.size(); i++)
    if (!(q.qscale.data[i] > 0))
      fail(si.file, "tensor " + quote(qs) + " has scale " + fmt_num(q.qscale.data[i]) + " at element " + std::to_string(i) +
                        "; scales must be finite and > 0");
  if (src.has(qw)) {
    const TensorInfo& wi = src.info(qw);
    if (src.has(name + ".weight"))
      fail(wi.file, "tensor " + quote(qw) + " and " + quote(name + ".weight") + " both present (one linear, two weights)");
    if (wi.dtype != DType::U8 || wi.shape.size() != 1)
      fail(wi.file, "tensor " + quote(qw) + " must be U8 and 1-D, is " + dtype_name(wi.dtype) + " " + shape_str(wi.shape));
    const int64_t G = si.shape[1];
    if (G > 1 && (in / G) % kStepK != 0)
      fail(si.file, "tensor " + quote(qs) + " implies group size " + std::to_string(in / G) +
                        ", but packed weights need a multiple of 8");
    const size_t want = tt.packed_bytes(out, in);
    if (wi.nbytes != want)
      fail(wi.file, "tensor " + quote(qw) + " has " + std::to_string(wi.nbytes) + " bytes; " + std::to_string(out) + "x" +
                        std::to_string(in) + " int" + std::to_string(q.qbits) + " packs into " + std::to_string(want));
  }
  return q;
}

void check_on_grid(const Tensor& w, const LinearQuant& q, const std::string& file, const std::string& name) {
  if (q.qbits == 0) return;
  const int64_t N = w.dim(0), K = w.dim(1), G = q.qscale.dim(1), group = K / G;
  const std::optional<WType> type = wtype_for_bits(q.qbits);
  if (!type) fail(file, "tensor " + quote(name + ".qbits") + " is " + std::to_string(q.qbits) + "; no such weight type");
  const WTypeTraits& tt = wtype_traits(*type);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) {
      const float wv = w.data[(size_t)(n * K + k)], s = q.qscale.data[(size_t)(n * G + k / group)];
      int8_t code;
      if (!grid_code(tt, wv, s, &code)) {
        const float v = wv / s;
        fail(file, "tensor " + quote(name + ".weight") + " is not on the int" + std::to_string(q.qbits) +
                       " grid of its scales (element " + std::to_string(n * K + k) + ": w/scale = " + fmt_num(v) + ")");
      }
    }
}

}  // namespace kt
