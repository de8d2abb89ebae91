// Checkpoints whose family fuses tensors (ArchTable::fused: Phi-3's qkv_proj, gate_up_proj).
// Everything inside kurtail sees the per-field tensors: a fused checkpoint is read through
// UnfusedSource (views of row ranges, no copy), and writers concatenate the parts back with
// fuse_linears, so a saved model keeps the family's on-disk names.
#pragma once
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/arch.h"
#include "core/tensor.h"

namespace kt {

struct Linear;

// `base` as if every fused tensor were stored as its parts: "model.layers.N.<part>.<kind>" is a
// view of the part's rows of "model.layers.N.<fused>.<kind>" (weight, bias, qscale: row ranges;
// a packed qweight: its part's 16-row tiles; qbits: shared by the parts). The fused names are
// not listed. A fused tensor whose rows do not match the parts' sizes fails here, naming it.
class UnfusedSource : public TensorSource {
 public:
  UnfusedSource(std::shared_ptr<const TensorSource> base, const ModelSpec& s);
  bool has(const std::string& name) const override;
  const TensorInfo& info(const std::string& name) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override { return base_->describe(); }

 private:
  std::shared_ptr<const TensorSource> base_;
  const ArchTable* table_;
  int n_layers_;
  std::map<std::string, TensorInfo> views_;  // part name -> view
  std::set<std::string> hidden_;  // the fused names split into views_
};

// `base` itself when the family stores no fused tensor, else an UnfusedSource over it.
std::shared_ptr<TensorSource> unfused_source(std::shared_ptr<TensorSource> base, const ModelSpec& s);

// Whether a fused tensor can be stored packed: its split at load cuts the packed tiles, so every
// part but the last must be a whole number of kTileN rows (else writers keep it on the grid in fp32).
bool fused_packable(const FusedRow& r, const ModelSpec& s);

// The parts' linears concatenated along out (weight, bias, scales), as one linear of the fused
// tensor. Parts must agree on bits and scale groups; a packed part is unpacked to its grid values.
// `what` names it in messages.
Linear fuse_linears(const std::vector<const Linear*>& parts, const std::string& what);

}  // namespace kt
