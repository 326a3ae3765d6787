"""Pathological input and random misuse of the Python API: an lq.Error (or
a correct result), never a crash. A crash would take the pytest process
down, so every case below that returns at all has passed that part."""

import os

import pytest

import lq

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples",
                       "mlp_train_step.mlir")


def _deep_regions(n):
    return ("func.func @f() {" + " scf.execute_region {" * n + " scf.yield"
            + " } scf.yield" * (n - 1) + " } return }")


def _big_k_program():
    d = 2**63 - 1
    q = f"!lq.qtensor<4x{d}x!lq.log4>"
    w = f"!lq.qtensor<{d}x4x!lq.sint4>"
    return (f"func.func @f(%a: {q}, %b: {w}, %s: f32) -> tensor<4x4xf32> {{ "
            f"%y = lq.matmul (%a) scale %s, %b scale %s : ({q}), {w} "
            f"-> tensor<4x4xf32> return %y : tensor<4x4xf32> }}")


def _truncated():
    with open(EXAMPLE) as f:
        return f.read()[:700]


@pytest.mark.parametrize("program, message", [
    # MLIR's parser recurses per level: bounded before parsing.
    (_deep_regions(5000), r"program:1:\d+: nesting deeper than 1000"),
    ("func.func @f() { %0 = arith.constant dense<" + "[" * 100000 + "1"
     + "]" * 100000 + "> : tensor<1xi32> return }",
     r"program:1:\d+: nesting deeper than 1000"),
    ("func.func @f(%x: tensor<99999999999999999999x4xf32>) { return }",
     r"program:1:\d+: invalid dimension"),
    (_big_k_program(), r"program:1:\d+: 'lq.matmul' op K = 9223372036854775807"),
    ("module {\n  func.return\n}", r"program:2:3: 'func.return' op expects"),
    (_truncated(), r"program:\d+:\d+: expected"),
    (bytes(range(256)).decode("latin-1") * 4, r"program:1:\d+: "),
    ("func.func @f() {\0\1 return }", r"program:1:\d+: unexpected character"),
    ("", r"exactly one lq.matmul"),
], ids=["deep-regions", "deep-attribute", "huge-dimension", "huge-k",
        "wrong-place", "truncated", "binary", "nul", "empty"])
def test_pathological_programs_are_errors(program, message):
    with pytest.raises(lq.Error, match=message):
        lq.compile_program(program)


def test_nesting_within_the_bound_is_parsed_on_a_large_stack():
    # 900 nested regions parse, verify and run lq-expand-linear; the program
    # has no GEMM, which is the error.
    with pytest.raises(lq.Error, match="exactly one lq.matmul"):
        lq.compile_program(_deep_regions(900))


# --- lq.gemm and lq.quantize on random shapes, layouts and misuse ---------

import numpy as np  # noqa: E402

from conftest import to_bf16_bits  # noqa: E402

ROLES = ["forward", "backward_data", "weight_grad"]


def _dim(rng):
    return int(rng.choice([0, 1, 2, 7, int(rng.randint(3, 48))]))


def _padded(rng, x):
    """x with a random row pitch: a view of a wider array."""
    pad = int(rng.randint(0, 5))
    wide = np.zeros((x.shape[0], x.shape[1] + pad), x.dtype)
    wide[:, :x.shape[1]] = x
    return wide[:, :x.shape[1]]


def _operand(rng, shape, bf16):
    x = (rng.randn(*shape) * np.exp2(rng.randint(-8, 4))).astype(np.float32)
    return to_bf16_bits(x) if bf16 else x


def _shapes(role, m, n, k):
    """Stored shapes of a and b for the role's (M, N, K)."""
    if role == "forward":       # x [B, I], W [O, I]: M = B, K = I, N = O
        return (m, k), (n, k)
    if role == "backward_data":  # dy [B, O], W [O, I]: M = B, K = O, N = I
        return (m, k), (k, n)
    return (k, m), (k, n)        # dy [B, O], x [B, I]: M = O, K = B, N = I


@pytest.mark.parametrize("seed", range(12))
def test_gemm_random_shapes_and_pitches_match_contiguous(seed):
    rng = np.random.RandomState(seed)
    for _ in range(6):
        role = ROLES[rng.randint(3)]
        m, n, k = _dim(rng), _dim(rng), _dim(rng)
        a_shape, b_shape = _shapes(role, m, n, k)
        bf16 = bool(rng.randint(2))
        a, b = _operand(rng, a_shape, bf16), _operand(rng, b_shape, bf16)
        bias = rng.randn(n).astype(np.float32) if rng.randint(2) else None
        kwargs = dict(role=role, seed=seed, stream=3, bias=bias,
                      relu=bool(rng.randint(2)),
                      samples=int(rng.choice([1, 2])) if role != "forward" else 1)
        ref, ref_status = lq.gemm(a, b, **kwargs)
        assert ref.shape == (m, n)
        out = _padded(rng, np.full((m, n), np.nan, np.float32))
        got, status = lq.gemm(_padded(rng, a), _padded(rng, b), out=out, **kwargs)
        assert got is out
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))
        assert status == ref_status


@pytest.mark.parametrize("seed", range(8))
def test_quantize_random_shapes_and_pitches_match_core(seed):
    rng = np.random.RandomState(100 + seed)
    for _ in range(6):
        rows, cols = _dim(rng), _dim(rng)
        x = _operand(rng, (rows, cols), False)
        fmt = ["log4", "sint4", "uint4"][rng.randint(3)]
        if fmt == "uint4":
            x = np.abs(x)
        codes, status = lq.quantize(_padded(rng, x), fmt, seed=seed, stream=2)
        again, _ = lq.quantize(x, fmt, seed=seed, stream=2)
        assert codes.shape == (rows, (cols + 1) // 2)
        assert np.array_equal(codes, again)
        if rows and cols:
            if fmt == "log4":
                ref, alpha, _, _ = lq.numerics.luq_encode(x, seed, 2, 0)
                assert np.float32(status["scale"]) == np.float32(alpha)
            else:
                ref, step, _, _ = lq.numerics.sawb_encode(
                    x, unsigned=fmt == "uint4", clip=status["range"])
                assert np.float32(status["scale"]) == np.float32(step)
            nibbles = (ref.astype(np.int16) & 15).astype(np.uint8)
            if cols % 2:
                nibbles = np.pad(nibbles, ((0, 0), (0, 1)))
            assert np.array_equal(codes, nibbles[:, 0::2] | (nibbles[:, 1::2] << 4))


def _misuses():
    rng = np.random.RandomState(7)
    x = rng.randn(8, 8).astype(np.float32)
    w = rng.randn(8, 8).astype(np.float32)
    row = rng.randn(1, 10).astype(np.float32)
    read_only = np.zeros((8, 8), np.float32)
    read_only.flags.writeable = False
    shared = rng.randn(8, 8).astype(np.float32)
    yield "float64", lambda: lq.gemm(x.astype(np.float64), w, role="forward")
    yield "int32", lambda: lq.quantize(x.astype(np.int32), "log4")
    yield "packed as float", lambda: lq.gemm(x.astype(np.uint8), w, role="forward")
    yield "1-D", lambda: lq.quantize(x.reshape(-1), "log4")
    yield "3-D", lambda: lq.gemm(x.reshape(2, 4, 8), w, role="forward")
    yield "column stride", lambda: lq.gemm(x[:, ::2], w[:, :4], role="forward")
    yield "one strided row", lambda: lq.gemm(row[:, ::2], w[:, :5], role="forward")
    yield "transposed view", lambda: lq.quantize(x.T, "sint4")
    yield "reversed rows", lambda: lq.quantize(x[::-1], "sint4")
    yield "zero row pitch", lambda: lq.quantize(
        np.lib.stride_tricks.as_strided(x, (1 << 40, 8), (0, 4)), "log4")
    yield "read-only out", lambda: lq.gemm(x, w, role="forward", out=read_only)
    yield "out shape", lambda: lq.gemm(x, w, role="forward",
                                       out=np.zeros((8, 7), np.float32))
    yield "out dtype", lambda: lq.gemm(x, w, role="forward",
                                       out=np.zeros((8, 8), np.uint8))
    yield "out aliases a", lambda: lq.gemm(shared, w, role="forward", out=shared)
    yield "out aliases b", lambda: lq.gemm(x, shared, role="backward_data",
                                           out=shared)
    yield "strided bias", lambda: lq.gemm(x, w, role="forward",
                                          bias=np.zeros(16, np.float32)[::2])
    yield "short bias", lambda: lq.gemm(x, w, role="forward",
                                        bias=np.zeros(3, np.float32))
    yield "role", lambda: lq.gemm(x, w, role="sideways")
    yield "format", lambda: lq.quantize(x, "int2")
    yield "samples", lambda: lq.gemm(x, w, role="backward_data", samples=3)
    yield "reduction", lambda: lq.gemm(x, w[:, :5], role="forward")


@pytest.mark.parametrize("name, call", list(_misuses()),
                         ids=[name for name, _ in _misuses()])
def test_misuse_is_an_error(name, call):
    with pytest.raises(lq.Error):
        call()


def _raw_tensors():
    """TensorRefs straight to the runtime: null, negative, huge."""
    buf = np.zeros(256, np.float32)
    p = buf.ctypes.data
    T = lq._lq.TensorRef
    huge = 1 << 40
    yield "null lhs", T(0, "f32", 4, 4, 4), T(p, "f32", 4, 4, 4)
    yield "null out", T(p, "f32", 4, 4, 4), T(0, "f32", 4, 4, 4)
    yield "negative rows", T(p, "f32", -1, 4, 4), T(p + 512, "f32", 4, 4, 4)
    yield "negative pitch", T(p, "f32", 4, 4, -4), T(p + 512, "f32", 4, 4, 4)
    yield "huge", T(p, "f32", huge, huge, huge), T(p + 512, "f32", 4, 4, 4)
    yield "huge k", T(p, "f32", 4, 1 << 50, 1 << 50), T(p + 512, "f32", 4, 4, 4)
    yield "overflowing", T(p, "f32", 1 << 62, 1 << 62, 1 << 62), \
        T(p + 512, "f32", 4, 4, 4)
    yield "aliased", T(p, "f32", 4, 4, 4), T(p + 32, "f32", 4, 4, 4)
    yield "buf", buf, None


def test_raw_tensor_refs_are_errors():
    kernel = lq._lq.compile(lq.GemmSpec("sint4", "f32", False, "sint4", "f32",
                                        True))
    cases = list(_raw_tensors())
    keep = cases.pop()[1]  # the buffer the refs point into
    w = lq._lq.TensorRef(keep.ctypes.data + 768, "f32", 4, 4, 4)
    for name, a, out in cases:
        with pytest.raises(lq.Error):
            kernel.launch(a, w, out)
        packed = lq._lq.TensorRef(keep.ctypes.data + 640, "packed4", 4, 4, 2)
        if name != "null out":
            with pytest.raises(lq.Error):
                lq._lq.quantize(a, out if name == "aliased" else packed, "log4")
