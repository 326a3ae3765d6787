#!/usr/bin/env python3
"""One training step of a 4-bit linear layer: lq.torch.Linear against the
same math in plain PyTorch ops (fake quantization: SAWB and LUQ computed in
f32 tensors, then f32 matmuls).

    PYTHONPATH=build/python /usr/bin/python3 python/benchmarks/bench_linear.py

Prints the median step time of each over repeated runs and their ratio.
PyTorch runs at every intra-op thread count from 1 to the number of CPUs
and is compared at its fastest (printed with the count); lq uses its own
runtime's threads.
"""

import argparse
import os
import statistics
import time

import torch

import lq.torch


def sawb(x, levels):
    """SAWB fake quantization: clip from the moments, round to nearest even."""
    x64 = x.double()
    clip = 12.1 * x64.pow(2).mean().sqrt() - 12.2 * x64.abs().mean()
    clip = float(min(max(clip.item(), 1e-30), x.abs().max().item()))
    step = clip / levels
    low = 0 if levels == 15 else -levels
    return torch.clamp(torch.round(x / step), low, levels) * step


def luq(x):
    """LUQ fake quantization: max scaling, stochastic underflow, stochastic
    logarithmic rounding (torch's generator in place of Philox)."""
    alpha = x.abs().max() / 64
    r = x.abs() / alpha
    u = torch.rand_like(r)
    e = torch.floor(torch.log2(torch.clamp(r, min=1.0)))
    low = torch.pow(2.0, e)
    frac = r / low - 1
    level = torch.where(u < frac, low * 2, low)
    level = torch.where(r < 1, (u < r).float(), torch.clamp(level, max=64))
    return torch.sign(x) * level * alpha


class FakeQuantLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        qx, qw = sawb(x, 15), sawb(w, 7)
        ctx.save_for_backward(qx, qw)
        return qx @ qw.t() + b

    @staticmethod
    def backward(ctx, dy):
        qx, qw = ctx.saved_tensors
        qdy = luq(dy)
        return qdy @ qw, qdy.t() @ qx, dy.sum(0)


def time_steps(step, repeats):
    for _ in range(3):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--in-features", type=int, default=784)
    parser.add_argument("--out-features", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, args.in_features)
    layer = lq.torch.Linear(args.in_features, args.out_features)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    dy = torch.randn(args.batch, args.out_features) * 1e-3

    x.requires_grad_(True)

    # Both steps start from no gradients (set_to_none), so that neither
    # pays for zero-filling and accumulating into old ones: each produces
    # fresh dx, dW and db, as a training step with set_to_none does.
    def lq_step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(dy)

    def torch_step():
        w.grad = b.grad = x.grad = None
        FakeQuantLinear.apply(x, w, b).backward(dy)

    t_lq = time_steps(lq_step, args.repeats)
    default_threads = torch.get_num_threads()
    by_threads = {}
    for threads in range(1, (os.cpu_count() or 1) + 1):
        torch.set_num_threads(threads)
        by_threads[threads] = time_steps(torch_step, args.repeats)
    torch.set_num_threads(default_threads)
    best = min(by_threads, key=by_threads.get)
    t_torch = by_threads[best]
    print(f"linear {args.batch}x{args.in_features}->{args.out_features}, "
          f"{os.cpu_count()} CPUs, PyTorch default {default_threads} "
          f"intra-op threads")
    print(f"  lq.torch.Linear step        {t_lq * 1e3:8.2f} ms")
    for threads, t in by_threads.items():
        mark = "  <- fastest" if threads == best else ""
        print(f"  PyTorch fake quantization   {t * 1e3:8.2f} ms "
              f"({threads} threads){mark}")
    print(f"  speedup vs PyTorch at {best} threads  {t_torch / t_lq:8.2f}x")


if __name__ == "__main__":
    main()
