#include "model/fused.h"

#include <algorithm>

#include "kernels/packed.h"
#include "kernels/wtype.h"
#include "model/model.h"
#include "util/error.h"

namespace kt {

namespace {

// "model.layers.N.<suffix>.<kind>" -> layer N (< n_layers), suffix and kind; false otherwise.
bool split_layer_name(const std::string& n, int n_layers, int* layer, std::string* rest) {
  const std::string pre = kHfLayerPrefix;
  if (n.compare(0, pre.size(), pre) != 0) return false;
  const size_t dot = n.find('.', pre.size());
  if (dot == std::string::npos || dot == pre.size() || dot - pre.size() > 6) return false;
  int v = 0;
  for (size_t i = pre.size(); i < dot; i++) {
    if (n[i] < '0' || n[i] > '9') return false;
    v = v * 10 + (n[i] - '0');
  }
  if (v >= n_layers) return false;
  *layer = v;
  *rest = n.substr(dot + 1);
  return true;
}

// rest = "<hf>.<kind>" -> kind
bool match_suffix(const std::string& rest, const char* hf, std::string* kind) {
  const std::string h = std::string(hf) + ".";
  if (rest.compare(0, h.size(), h) != 0 || rest.size() == h.size()) return false;
  *kind = rest.substr(h.size());
  return true;
}

std::vector<int64_t> part_rows(const ArchTable& t, const FusedRow& r, const ModelSpec& s) {
  std::vector<int64_t> v;
  for (Field f : r.parts) v.push_back(row_shape(t.row(f), s)[0]);
  return v;
}

std::string rows_str(const ArchTable& t, const FusedRow& r, const std::vector<int64_t>& rows) {
  std::string out;
  for (size_t i = 0; i < rows.size(); i++)
    out += (i ? ", " : "") + std::string(t.row(r.parts[i]).hf) + " " + std::to_string(rows[i]);
  return out;
}

}  // namespace

UnfusedSource::UnfusedSource(std::shared_ptr<const TensorSource> base, const ModelSpec& s)
    : base_(std::move(base)), table_(&arch_table(s)), n_layers_(s.n_layers) {
  const ArchTable& t = *table_;
  for (const std::string& n : base_->names()) {
    int l;
    std::string rest, kind;
    if (!split_layer_name(n, s.n_layers, &l, &rest)) continue;
    for (const FusedRow& r : t.fused) {
      if (!match_suffix(rest, r.hf, &kind)) continue;
      const TensorInfo& ti = base_->info(n);
      const std::vector<int64_t> rows = part_rows(t, r, s);
      int64_t total = 0;
      for (int64_t x : rows) total += x;
      // bytes of each part: rows of a per-row tensor, 16-row tiles of a packed one, all of a scalar
      std::vector<size_t> bytes(rows.size(), ti.nbytes);
      if (kind == "weight" || kind == "bias" || kind == "qscale") {
        if (ti.shape.empty() || ti.shape[0] != total || ti.nbytes % (size_t)total)
          fail(ti.file, "tensor " + quote(n) + " has shape " + shape_str(ti.shape) + " but config.json implies " +
                            std::to_string(total) + " rows (" + rows_str(t, r, rows) + ")");
        for (size_t i = 0; i < rows.size(); i++) bytes[i] = ti.nbytes / total * rows[i];
      } else if (kind == "qweight") {
        const int64_t tiles = (total + kTileN - 1) / kTileN;
        for (size_t i = 0; i + 1 < rows.size(); i++)
          if (rows[i] % kTileN)
            fail(ti.file, "tensor " + quote(n) + " is packed but its parts (" + rows_str(t, r, rows) +
                              ") do not split at whole 16-row tiles");
        if (ti.nbytes % (size_t)tiles) fail(ti.file, "tensor " + quote(n) + " has " + std::to_string(ti.nbytes) +
                                                         " bytes, not a whole number of 16-row tiles");
        for (size_t i = 0; i < rows.size(); i++) bytes[i] = ti.nbytes / tiles * ((rows[i] + kTileN - 1) / kTileN);
      } else if (kind != "qbits") {
        continue;  // not a linear's tensor: left as it is (validation names it)
      }
      size_t off = 0;
      for (size_t i = 0; i < rows.size(); i++) {
        const std::string part = hf_name(t.row(r.parts[i]), l, kind.c_str());
        if (base_->has(part)) fail(ti.file, "tensor " + quote(n) + " and its part " + quote(part) + " are both present");
        TensorInfo v = ti;
        v.name = part;
        if (kind != "qbits") {
          v.data = ti.data + off;
          v.nbytes = bytes[i];
          if (kind == "qweight") v.shape = {(int64_t)bytes[i]};
          else v.shape[0] = rows[i];
          off += bytes[i];
        }
        views_.emplace(part, std::move(v));
      }
      hidden_.insert(n);
    }
  }
}

bool UnfusedSource::has(const std::string& name) const {
  return views_.count(name) || (!hidden_.count(name) && base_->has(name));
}

const TensorInfo& UnfusedSource::info(const std::string& name) const {
  auto it = views_.find(name);
  if (it != views_.end()) return it->second;
  if (!hidden_.count(name) && base_->has(name)) return base_->info(name);
  // A missing part: name the fused tensor the checkpoint should hold.
  int l;
  std::string rest, kind;
  if (split_layer_name(name, n_layers_, &l, &rest))
    for (const FusedRow& r : table_->fused)
      for (Field f : r.parts)
        if (match_suffix(rest, table_->row(f).hf, &kind)) fail(describe(), "missing tensor " + quote(hf_name(r, l, kind.c_str())));
  return base_->info(name);  // fails naming it
}

std::vector<std::string> UnfusedSource::names() const {
  std::vector<std::string> v;
  for (const std::string& n : base_->names())
    if (!hidden_.count(n)) v.push_back(n);
  for (const auto& [n, _] : views_) v.push_back(n);
  return v;
}

std::shared_ptr<TensorSource> unfused_source(std::shared_ptr<TensorSource> base, const ModelSpec& s) {
  if (arch_table(s).fused.empty()) return base;
  return std::make_shared<UnfusedSource>(std::move(base), s);
}

bool fused_packable(const FusedRow& r, const ModelSpec& s) {
  const ArchTable& t = arch_table(s);
  for (size_t i = 0; i + 1 < r.parts.size(); i++)
    if (row_shape(t.row(r.parts[i]), s)[0] % kTileN) return false;
  return true;
}

namespace {

// The linear's weights as fp32 values; a packed-only linear is unpacked onto its grid (q * scale).
Tensor grid_weights(const Linear& l) {
  if (!l.packed || !l.w.data.empty()) return l.w;
  const PackedWeight& p = *l.packed;
  std::vector<int8_t> q((size_t)p.N * p.K);
  unpack_weights_ref(p, q.data());
  Tensor w({(int64_t)p.N, (int64_t)p.K});
  const int64_t G = l.qscale.dim(1);
  for (int64_t n = 0; n < p.N; n++)
    for (int64_t k = 0; k < p.K; k++)
      w.data[(size_t)(n * p.K + k)] = q[(size_t)(n * p.K + k)] * l.qscale.data[(size_t)(n * G + k / p.group)];
  return w;
}

// Rows of each tensor stacked: [sum rows, cols...].
Tensor concat_rows(const std::vector<const Tensor*>& ts) {
  std::vector<int64_t> shape = ts[0]->shape;
  shape[0] = 0;
  for (const Tensor* t : ts) shape[0] += t->dim(0);
  Tensor out(shape);
  size_t off = 0;
  for (const Tensor* t : ts) {
    std::copy(t->data.begin(), t->data.end(), out.data.begin() + (ptrdiff_t)off);
    off += t->data.size();
  }
  return out;
}

}  // namespace

Linear fuse_linears(const std::vector<const Linear*>& parts, const std::string& what) {
  Linear out;
  std::vector<Tensor> ws;
  std::vector<const Tensor*> wp, bp, sp;
  for (const Linear* l : parts) ws.push_back(grid_weights(*l));
  for (size_t i = 0; i < parts.size(); i++) {
    const Linear& l = *parts[i];
    if (ws[i].dim(1) != ws[0].dim(1)) fail(what + ": the fused parts differ in input size");
    if (l.b.empty() != parts[0]->b.empty()) fail(what + ": some fused parts have a bias and some do not");
    if (l.qbits != parts[0]->qbits || l.qscale.empty() != parts[0]->qscale.empty() ||
        (!l.qscale.empty() && l.qscale.dim(1) != parts[0]->qscale.dim(1)))
      fail(what + ": the fused parts are quantized differently (bits or scale groups); they must be stored as one tensor");
    wp.push_back(&ws[i]);
    if (!l.b.empty()) bp.push_back(&l.b);
    if (!l.qscale.empty()) sp.push_back(&l.qscale);
  }
  out.w = concat_rows(wp);
  if (!bp.empty()) out.b = concat_rows(bp);
  if (!sp.empty()) out.qscale = concat_rows(sp);
  out.qbits = parts[0]->qbits;
  return out;
}

}  // namespace kt
