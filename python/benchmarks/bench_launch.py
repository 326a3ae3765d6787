#!/usr/bin/env python3
"""What a small GEMM costs from Python: lq.gemm and an lq.torch.Linear
forward on 16x16x16 against Kernel.launch on TensorRefs made beforehand
(the floor of any call through the bindings) and torch.nn.Linear.

    PYTHONPATH=build/python /usr/bin/python3 python/benchmarks/bench_launch.py

The cases run interleaved, round after round, so that a slow spell of the
machine hits them alike; each prints the median and the fastest of its
rounds' per-call times. At this size the arithmetic is a small part of a
call: what is measured is the work around the kernel.
"""

import argparse
import statistics
import time

import numpy as np
import torch

import lq
import lq.torch
from lq import _lq

# Per-call targets, microseconds.
TARGETS = {"lq.gemm (NumPy)": 8.0, "lq.gemm (torch)": 8.0,
           "lq.torch.Linear forward": 8.0,
           "lq.torch.Linear forward, no_grad": 8.0}


def cases(size):
    """name -> a function making one call, all on size^3 problems."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty((size, size), np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    kernel = _lq.compile(lq.gemm_spec("forward"))
    # TensorRefs hold addresses only: the arrays stay alive with `arrays`.
    arrays = (a, b, out)
    refs = [_lq.TensorRef(t.ctypes.data, "f32", size, size, size)
            for t in arrays]
    layer = lq.torch.Linear(size, size)
    reference = torch.nn.Linear(size, size)
    x = torch.randn(size, size)

    def no_grad_forward():
        with torch.no_grad():
            layer(x)

    return {
        "Kernel.launch (TensorRefs made once)":
            lambda: arrays and kernel.launch(*refs),
        "lq.gemm (NumPy)": lambda: lq.gemm(a, b, role="forward"),
        "lq.gemm (torch)": lambda: lq.gemm(ta, tb, role="forward"),
        "lq.torch.Linear forward": lambda: layer(x),
        "lq.torch.Linear forward, no_grad": no_grad_forward,
        "torch.nn.Linear forward (fp32)": lambda: reference(x),
    }


def measure(calls, rounds, per_round):
    """name -> per-call times (seconds) of each round."""
    for call in calls.values():
        for _ in range(per_round // 10 + 1):
            call()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(per_round):
                call()
            times[name].append((time.perf_counter() - start) / per_round)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=2000,
                        help="calls per case and round")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"GEMM {args.size}x{args.size}x{args.size}, forward role; "
          f"torch {torch.__version__} with {torch.get_num_threads()} "
          f"intra-op thread(s); lq JIT target {_lq.host_description()}; "
          "lq.torch.Linear through its " +
          ("C++ autograd function" if lq.torch._native is not None
           else "Python autograd.Function"))
    times = measure(cases(args.size), args.rounds, args.calls)
    print(f"{'call':38} {'median':>9} {'fastest':>9}  target")
    for name, values in times.items():
        median = statistics.median(values) * 1e6
        target = TARGETS.get(name)
        verdict = "" if target is None else (
            f"<= {target:g} us " + ("met" if median <= target else "MISSED"))
        print(f"{name:38} {median:7.2f}us {min(values) * 1e6:7.2f}us  "
              f"{verdict}")


if __name__ == "__main__":
    main()
