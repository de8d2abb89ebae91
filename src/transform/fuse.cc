#include "transform/fuse.h"

#include <algorithm>

#include "util/error.h"

namespace kt {

namespace {

void scale_columns(Linear& l, const Tensor& alpha) {
  const int64_t out = l.out(), in = l.in();
  for (int64_t i = 0; i < out; i++)
    for (int64_t j = 0; j < in; j++) l.w.data[(size_t)i * in + j] *= alpha.data[j];
}

void set_ones(Tensor& t) { std::fill(t.data.begin(), t.data.end(), 1.0f); }

}  // namespace

void rotate_input_side(Linear& l, const Rotation& q) {
  if (l.in() != q.n()) fail("rotation size " + std::to_string(q.n()) + " does not match layer input " + std::to_string(l.in()));
  q.apply(l.w.ptr(), l.out());
}

void rotate_output_side(Linear& l, const Rotation& q) {
  if (l.out() != q.n()) fail("rotation size does not match layer output");
  // W^T Q = (Q^T W)^T, a block of columns of W (rows of W^T) at a time: no transposed copies of
  // the whole weight (a 7B down_proj is 180 MiB; two copies set a streamed layer's peak). Fixed
  // blocks of 256 from column 0: a dense Q's BLAS product, whose bits depend on a row's place in
  // it, sees each column in the same place whatever else runs.
  const int64_t out = l.out(), in = l.in(), B = 256;
  float* w = l.w.ptr();
  std::vector<float> t((size_t)(std::min(B, in) * out));
  for (int64_t c0 = 0; c0 < in; c0 += B) {
    const int64_t nc = std::min(B, in - c0);
    for (int64_t r = 0; r < out; r++)
      for (int64_t c = 0; c < nc; c++) t[(size_t)(c * out + r)] = w[r * in + c0 + c];
    q.apply(t.data(), nc);
    for (int64_t r = 0; r < out; r++)
      for (int64_t c = 0; c < nc; c++) w[r * in + c0 + c] = t[(size_t)(c * out + r)];
  }
  if (!l.b.empty()) q.apply(l.b.ptr(), 1);
}

void fold_layer_norms(LayerWeights& w) {
  auto sites = site_consumers(w);
  for (auto& g : sites)
    if (g.norm)
      for (auto& c : g.linears) scale_columns(*c.lin, *g.norm);
  for (auto& g : sites)
    if (g.norm) set_ones(*g.norm);
}

void fold_final_norm(Model& m) {
  m.untie_lm_head();
  const int64_t d = m.spec.hidden;
  m.transform_head_rows([norm = m.final_norm.data, d](float* rows, int64_t n) {
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < d; j++) rows[i * d + j] *= norm[j];
  });
  set_ones(m.final_norm);
}

void rotate_residual_globals(Model& m, const Rotation& r1) {
  rotate_residual_globals(m, std::make_shared<const Rotation>(r1));
}

void rotate_residual_globals(Model& m, std::shared_ptr<const Rotation> r1) {
  m.untie_lm_head();
  // kept by a model whose globals are deferred: applied as their rows are read
  const Model::GlobalRowsFn f = [r1](float* rows, int64_t n) { r1->apply(rows, n); };
  m.transform_embed_rows(f);
  m.transform_head_rows(f);
}

void rotate_residual_layer(LayerWeights& w, const std::shared_ptr<const Rotation>& r1) {
  if (w.post_norm_r1) fail("rotate_residual_layer: the layer's post-norm output is already rotated");
  auto sites = site_consumers(w);
  for (auto& g : sites)  // readers of the residual stream first, as the order always was
    if (!g.writes_residual)
      for (auto& c : g.linears) rotate_input_side(*c.lin, *r1);
  if (w.has_post_norms()) {  // the writers' outputs go through a post-norm first: R1 runs after it
    if (w.post_mlp_norm.empty()) fail("rotate_residual_layer: a layer with one post-norm but not the other");
    w.post_norm_r1 = std::make_shared<const RotationRows>(r1);
    return;
  }
  for (auto& g : sites)
    if (g.writes_residual)
      for (auto& c : g.linears) rotate_output_side(*c.lin, *r1);
}

void rotate_heads(float* x, int64_t rows, int nheads, const Rotation& q) { q.apply(x, rows * nheads); }

void rotate_value_heads(LayerWeights& w, const ModelSpec& s, const Rotation& r2) {
  const int hd = s.head_dim;
  if (r2.n() != hd) fail("R2 size must equal head_dim");
  // v_proj output side, per kv head: rows [h*hd, (h+1)*hd) of W_v.
  const int64_t in = w.v.in();
  for (int h = 0; h < s.n_kv_heads; h++) {
    Tensor blk({hd, in});
    std::copy_n(w.v.w.ptr() + (int64_t)h * hd * in, hd * in, blk.ptr());
    Linear tmp;
    tmp.w = std::move(blk);
    if (!w.v.b.empty()) {
      tmp.b = Tensor({hd});
      std::copy_n(w.v.b.ptr() + h * hd, hd, tmp.b.ptr());
    }
    rotate_output_side(tmp, r2);
    std::copy_n(tmp.w.ptr(), hd * in, w.v.w.ptr() + (int64_t)h * hd * in);
    if (!w.v.b.empty()) std::copy_n(tmp.b.ptr(), hd, w.v.b.ptr() + h * hd);
  }
  // o_proj input side, per query head: each row's segment [h*hd, (h+1)*hd) times R2.
  // Rows of W_o are contiguous segments of length hd, so this is one batched apply.
  r2.apply(w.o.w.ptr(), w.o.out() * s.n_heads);
}

void fuse_down_input(LayerWeights& w, const std::vector<Rotation>& r4) {
  for (auto& g : site_consumers(w))
    if (g.site == Site::DownIn)
      for (auto& c : g.linears) {
        const Rotation* q = nullptr;
        for (const Rotation& r : r4)
          if (r.n() == c.lin->in()) q = &r;
        if (!q) fail("R4: no rotation for a down_proj input of width " + std::to_string(c.lin->in()));
        rotate_input_side(*c.lin, *q);
      }
}

void convert_rope_to_rotate_half(Model& m) {
  if (m.spec.rope_style == RopeStyle::RotateHalf) return;
  const int hd = m.spec.head_dim, half = hd / 2;
  auto permute = [hd, half](Linear& l, int nheads) {
    const int64_t in = l.in();
    Tensor o = l.w;
    for (int h = 0; h < nheads; h++)
      for (int i = 0; i < half; i++)
        for (int t = 0; t < 2; t++) {  // interleaved row 2i+t -> rotate_half row i + t*half
          const float* src = l.w.ptr() + ((int64_t)h * hd + 2 * i + t) * in;
          std::copy_n(src, in, o.ptr() + ((int64_t)h * hd + i + t * half) * in);
        }
    l.w = o;
    if (!l.b.empty()) {
      Tensor b = l.b;
      for (int h = 0; h < nheads; h++)
        for (int i = 0; i < half; i++)
          for (int t = 0; t < 2; t++) b.data[h * hd + i + t * half] = l.b.data[h * hd + 2 * i + t];
      l.b = b;
    }
  };
  // at load, layer by layer: a streamed model is converted without holding every layer
  const ModelSpec spec = m.spec;
  m.add_load_transform([permute, spec](LayerWeights& w) {
    const ArchTable& table = arch_table(spec);
    // the rows GGUF permutes (q, k) are the ones whose RoPE pairs differ between the conventions
    w.for_each_linear([&](LinearId id, Linear& l) {
      if (int heads = permute_heads(table.row(id.field), spec)) permute(l, heads);
    });
  });
  m.spec.rope_style = RopeStyle::RotateHalf;
}

}  // namespace kt
