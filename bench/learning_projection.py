#!/usr/bin/env python3
"""Projects the cost of learning rotations (issue #17) from counted FLOPs and a measured rate.

FLOPs are counted for kurtail's own implementation (src/train/ for SpinQuant, transform/kurtail
for KurTail), per model shape:
  SpinQuant, per training window of T tokens (forward + backward, weights frozen):
    linears 6 P_lin T (forward 2, input gradient 2, weight gradient 2: the fused weights'
    gradient is what is chained to R1/R2), lm_head 6 P_head T, attention 6 L T^2 q_dim / 2 ... (causal),
    plus per step: fusing R1 into every weight and chaining the weight gradients back,
    4 P_all hidden.
  KurTail: one FP forward over the calibration (2 P T_cal + attention), then per iteration
    4 rows hidden^2 for R1 (Y = X R and X^T G) with rows = budget x layers x 2 sites, and
    4 rows_v head_dim^2 per layer for R2; plus its Cayley step, about 14 hidden^3 per iteration
    in Eigen double (the generator, an LU solve, the momentum transport), which runs at a lower
    rate (RATE_CAYLEY) than the float GEMMs and dominates from hidden ~1024 on.
The rate (GFLOP/s per core) comes from a measured run on the proxy (bench/learning_cost.sh);
a many-core machine is assumed to scale linearly (an assumption: large GEMMs do, kurtail's
small ops do not), so treat the 32-core column as a lower bound on time.
Usage: python3 bench/learning_projection.py RATE_GFLOPS_PER_CORE RATE_CAYLEY_GFLOPS_PER_CORE
"""
import sys

SHAPES = {  # hidden, ffn, layers, heads, kv_heads, head_dim, vocab
    "tinyllama-8m (proxy)": (256, 704, 8, 8, 4, 32, 8192),
    "Llama-3.2-1B": (2048, 8192, 16, 32, 8, 64, 128256),
    "Llama-2-7B": (4096, 11008, 32, 32, 32, 128, 32000),
    "Llama-3-8B": (4096, 14336, 32, 32, 8, 128, 128256),
    "Llama-3-70B": (8192, 28672, 80, 64, 8, 128, 128256),
}


def params(d, f, L, h, kv, hd, V):
    lin = L * (2 * d * h * hd + 2 * d * kv * hd + 3 * d * f)
    return lin, V * d


def spinquant_flops(shape, steps=100, windows=8, T=2048):
    d, f, L, h, kv, hd, V = shape
    lin, head = params(*shape)
    per_token = 6 * lin + 6 * head + 3 * L * T * h * hd * 2  # attention: QK^T and PV over T/2 keys on average, x3
    per_step = 4 * (lin + 2 * head) * d  # fuse R1 into every weight (+ embedding, head) and chain back
    return steps * (windows * T * per_token + per_step)


def kurtail_flops(shape, cal_windows=128, T=2048, budget=2048, iters=200):
    """(GEMM FLOPs, Cayley-step FLOPs)"""
    d, f, L, h, kv, hd, V = shape
    lin, head = params(*shape)
    capture = cal_windows * T * (2 * lin + L * T * h * hd * 2)
    r1 = iters * 4 * (budget * L * 2) * d * d
    r2 = iters * L * 4 * (budget * kv) * hd * hd
    cayley = iters * 14 * (d ** 3 + L * hd ** 3)
    return capture + r1 + r2, cayley


def memory_gib(shape, T=2048):
    """SpinQuant, one window without gradient checkpointing: the model and its fused copy in
    fp32, plus every layer's saved activations and attention probabilities."""
    d, f, L, h, kv, hd, V = shape
    lin, head = params(*shape)
    weights = 2 * 4 * (lin + 2 * head)
    acts = L * (T * (6 * d + 3 * f + 2 * h * hd + 2 * kv * hd) + h * T * T) * 4
    return weights / 2**30, acts / 2**30


def hours(flops, gflops):
    return flops / (gflops * 1e9) / 3600


def main():
    rate, cayley_rate = float(sys.argv[1]), float(sys.argv[2])
    print("| model | SpinQuant PFLOP | KurTail PFLOP (GEMM + Cayley) | ratio | SpinQuant h, 2 cores | KurTail h, 2 cores "
          "| SpinQuant h, 32 cores | KurTail h, 32 cores | SpinQuant GiB (weights + activations of one window) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in SHAPES.items():
        if name.startswith("tinyllama"):  # what a default run on the proxy does: 128 windows of 512
            sp, (kt, kc) = spinquant_flops(s, windows=2, T=512), kurtail_flops(s, T=512)
        else:  # SpinQuant's scripts (8 GPUs x 1 x 2048, 100 steps); KurTail on 128 x 2048
            sp, (kt, kc) = spinquant_flops(s), kurtail_flops(s)
        w, a = memory_gib(s, T=512 if name.startswith("tinyllama") else 2048)
        kt_h = lambda cores: hours(kt, cores * rate) + hours(kc, cores * cayley_rate)
        print(f"| {name} | {sp / 1e15:.3g} | {kt / 1e15:.3g} + {kc / 1e15:.2g} | {sp / (kt + kc):.1f}x | "
              f"{hours(sp, 2 * rate):.3g} | {kt_h(2):.3g} | {hours(sp, 32 * rate):.3g} | {kt_h(32):.3g} | "
              f"{w:.1f} + {a:.1f} |")


if __name__ == "__main__":
    main()
