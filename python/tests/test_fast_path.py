"""lq.gemm's fast path (_lq.gemm_host, host tensors and plain arguments)
against its general path (lq._gemm_general): the same outputs and status,
bit for bit, and the general path's errors where the fast path declines."""

import threading

import numpy as np
import pytest
import torch

import lq
import lq.torch
from lq import _lq


def general(a, b, role="forward", **kw):
    options = dict(role=role, out=None, bias=None, relu=False, samples=1,
                   unsigned_input=False, seed=0, stream=0, max_estimate=None,
                   bf16_output=False)
    options.update(kw)
    return lq._gemm_general(a, b, **options)


def bits(t):
    """The bit patterns of an output: f32 or bf16, NumPy or torch."""
    if isinstance(t, torch.Tensor):
        return t.view(torch.int16 if t.dtype == torch.bfloat16
                      else torch.int32).numpy()
    return t.view(np.uint16 if t.dtype == np.uint16 else np.uint32)


def operands(rng, role, m, n, k, kind, bf16):
    """a and b of a role's GEMM as stored, NumPy or torch, f32 or bf16."""
    lhs_t = role == "weight_grad"
    rhs_t = role == "forward"
    a = rng.randn(*((k, m) if lhs_t else (m, k))).astype(np.float32)
    b = rng.randn(*((n, k) if rhs_t else (k, n))).astype(np.float32)
    if kind == "torch":
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        if bf16:
            a = a.bfloat16()
    elif bf16:
        a = (a.view(np.uint32) >> 16).astype(np.uint16)
    return a, b


CASES = [
    ("forward", {}),
    ("forward", {"relu": True, "unsigned_input": True}),
    ("forward", {"bf16_output": True}),
    ("backward_data", {"samples": 2, "seed": 11, "stream": 3}),
    ("backward_data", {"max_estimate": 0.5, "seed": 5}),
    ("weight_grad", {"samples": 4, "unsigned_input": True, "seed": 9}),
]


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("role,options", CASES)
def test_fast_path_matches_general_path(rng, kind, bf16, role, options):
    # 16x16x16 runs on the calling thread alone, 96x80x130 on the team.
    for m, n, k in [(16, 16, 16), (7, 33, 5), (96, 80, 130)]:
        a, b = operands(rng, role, m, n, k, kind, bf16)
        kw = dict(options)
        if role == "forward" and m == 7:
            bias = rng.randn(n).astype(np.float32)
            kw["bias"] = torch.from_numpy(bias) if kind == "torch" else bias
        fast, fast_status = lq.gemm(a, b, role=role, **kw)
        slow, slow_status = general(a, b, role=role, **kw)
        assert type(fast) is type(slow) and fast.dtype == slow.dtype
        assert tuple(fast.shape) == tuple(slow.shape)
        assert np.array_equal(bits(fast), bits(slow))
        assert fast_status == slow_status


def test_fast_path_writes_a_given_output(rng):
    a, b = operands(rng, "forward", 12, 20, 24, "torch", False)
    out = torch.full((12, 20), 7.0)
    y, _ = lq.gemm(a, b, role="forward", out=out)
    assert y is out
    expected, _ = general(a, b)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("role,kw,message", [
    ("forward", {"unsigned_input": True, "role": "backward_data"},
     "unsigned_input applies to x"),
    ("forward", {"role": "sideways"}, "unknown role"),
    ("forward", {"samples": 3}, "SMP sample count"),
])
def test_fast_path_errors_are_the_general_paths(rng, role, kw, message):
    a, b = operands(rng, role, 8, 8, 8, "numpy", False)
    kw = dict(kw)
    role = kw.pop("role", role)
    with pytest.raises(lq.Error, match=message):
        lq.gemm(a, b, role=role, **kw)
    with pytest.raises(lq.Error, match=message):
        general(a, b, role=role, **kw)


def test_shape_mismatch_from_the_fast_path(rng):
    a = np.ones((4, 6), np.float32)
    b = np.ones((5, 7), np.float32)
    with pytest.raises(lq.Error, match="reduction dimensions differ"):
        lq.gemm(a, b, role="forward")


def test_arguments_the_fast_path_declines_still_work(rng):
    # A NumPy integer seed, a read-only output, a non-contiguous operand:
    # the general path takes or rejects them as before.
    a, b = operands(rng, "backward_data", 9, 10, 11, "numpy", False)
    y, status = lq.gemm(a, b, role="backward_data", seed=np.int64(3))
    expected, _ = general(a, b, role="backward_data", seed=3)
    assert np.array_equal(bits(y), bits(expected))
    out = np.zeros((9, 10), np.float32)
    out.flags.writeable = False
    with pytest.raises(lq.Error, match="read-only"):
        lq.gemm(a, b, role="backward_data", out=out)
    with pytest.raises(lq.Error, match="contiguous"):
        lq.gemm(np.asfortranarray(a), b, role="backward_data")


def test_linear_forward_no_grad_matches_autograd(rng):
    torch.manual_seed(0)
    layer = lq.torch.Linear(24, 12)
    x = torch.randn(5, 24)
    with torch.no_grad():
        y0 = layer(x)
    y1 = layer(x)
    assert torch.equal(y0, y1) and y1.requires_grad and not y0.requires_grad


def test_fast_path_from_several_threads(rng):
    # Python threads launching at once (the GIL is released around larger
    # launches): every result is the one a lone call gives.
    problems = [operands(rng, "forward", m, n, k, "torch", False)
                for m, n, k in [(16, 16, 16), (120, 90, 200), (33, 17, 65)]]
    expected = [general(a, b)[0] for a, b in problems]
    failures = []

    def work():
        for _ in range(20):
            for (a, b), e in zip(problems, expected):
                if not torch.equal(lq.gemm(a, b, role="forward")[0], e):
                    failures.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
