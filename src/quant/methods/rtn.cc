// rtn: no transform. The weights are quantized as the recipe says (RTN or GPTQ) by the loop.
#include "quant/method.h"

namespace kt {

namespace {
class Rtn : public Method {};
}  // namespace

std::unique_ptr<Method> make_rtn() { return std::make_unique<Rtn>(); }

}  // namespace kt
