// quarot (Ashkboos et al. 2024): randomized Hadamard R1 (residual) and R2 (per-head V/O) fused
// into the weights, online Hadamards R3 (Q/K after RoPE) and R4 (down_proj input). Its registry
// line sets the recipe's r1..r4; the loop builds those Hadamards from the recipe's seed and
// fuses them, as it does for every method whose recipe has them (kurtail, smoothrot), so QuaRot
// adds nothing of its own here.
#include "quant/method.h"

namespace kt {

namespace {
class Quarot : public Method {};
}  // namespace

std::unique_ptr<Method> make_quarot() { return std::make_unique<Quarot>(); }

}  // namespace kt
