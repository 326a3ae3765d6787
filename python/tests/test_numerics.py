"""The Python API against the C++ numerics core, bit for bit."""

import numpy as np
import pytest

import lq
from conftest import from_bf16_bits, luq_values, pack, to_bf16_bits

SHAPES = [(1, 1), (3, 5), (7, 33), (64, 17), (130, 64)]


@pytest.mark.parametrize("shape", SHAPES)
def test_luq_quantize_matches_core(rng, shape):
    x = (rng.randn(*shape) * 0.01).astype(np.float32)
    codes, status = lq.quantize(x, "log4", seed=99, stream=4, sample=1)
    ref, alpha, nonfinite, overflow = lq.numerics.luq_encode(x, 99, 4, 1)
    assert np.array_equal(codes, pack(ref))
    assert np.float32(status["scale"]) == np.float32(alpha)
    assert not status["nonfinite"] and not nonfinite


@pytest.mark.parametrize("fmt", ["sint4", "uint4"])
def test_sawb_quantize_matches_core_at_the_same_clip(rng, fmt):
    x = rng.randn(19, 23).astype(np.float32)
    if fmt == "uint4":
        x = np.abs(x)
    codes, status = lq.quantize(x, fmt)
    ref, step, _, _ = lq.numerics.sawb_encode(x, unsigned=fmt == "uint4",
                                              clip=status["range"])
    assert np.array_equal(codes, pack(ref))
    assert np.float32(status["scale"]) == np.float32(step)


def _clip_in_host_kernel_order(x):
    """The SAWB clip with the moments summed as the host kernels sum them
    (docs/runtime.md, "Host kernels"): f64 sums per chunk of 32 rows, in a
    chunk 8 lanes (lane l takes the columns c with c % 8 == l, rows in
    order), the lanes added in order, then the chunks in order."""
    rows, cols = x.shape
    sum_squares = sum_magnitudes = 0.0
    for r0 in range(0, rows, 32):
        squares, magnitudes = [0.0] * 8, [0.0] * 8
        for r in range(r0, min(rows, r0 + 32)):
            for c in range(cols):
                d = float(x[r, c])
                squares[c % 8] += d * d
                magnitudes[c % 8] += abs(d)
        chunk_squares = chunk_magnitudes = 0.0
        for lane in range(8):
            chunk_squares += squares[lane]
            chunk_magnitudes += magnitudes[lane]
        sum_squares += chunk_squares
        sum_magnitudes += chunk_magnitudes
    return lq.numerics.sawb_clip_from_moments(
        sum_squares, sum_magnitudes, float(x.size), float(np.abs(x).max()))


@pytest.mark.parametrize("shape", [(33, 47), (70, 129), (3, 301)])
def test_sawb_clip_is_exact_in_kernel_order(rng, shape):
    # The contract makes the clip exact given the summation order: the same
    # bits, not a tolerance. Normal data keeps the clip on the moments' rule
    # (heavy tails fall back to max |x|).
    x = (rng.randn(*shape) * 0.3).astype(np.float32)
    _, status = lq.quantize(x, "sint4")
    clip = _clip_in_host_kernel_order(x)
    assert status["range"] < float(np.abs(x).max())
    assert np.float32(status["range"]).view(np.uint32) == \
        np.float32(clip).view(np.uint32)


def test_bf16_input(rng):
    bits = to_bf16_bits(rng.randn(9, 14).astype(np.float32))
    codes, _ = lq.quantize(bits, "log4", seed=5)
    ref, _, _, _ = lq.numerics.luq_encode(from_bf16_bits(bits), 5)
    assert np.array_equal(codes, pack(ref))


def test_hindsight_estimate_and_overflow(rng):
    x = rng.randn(8, 8).astype(np.float32)
    estimate = float(np.abs(x).max()) / 4
    codes, status = lq.quantize(x, "log4", seed=1, max_estimate=estimate)
    ref, _, _, overflow = lq.numerics.luq_encode(x, 1, max_estimate=estimate)
    assert np.array_equal(codes, pack(ref))
    assert status["overflow"] == overflow > 0


def test_nonfinite_input_zeroes_codes(rng):
    x = rng.randn(4, 4).astype(np.float32)
    x[2, 1] = np.nan
    codes, status = lq.quantize(x, "log4")
    assert status["nonfinite"] and not codes.any()


def _sawb(x, unsigned, clip):
    codes, step, _, _ = lq.numerics.sawb_encode(x, unsigned=unsigned, clip=clip)
    return codes.astype(np.int64), np.float32(step)


def test_forward_gemm_is_the_exact_int_product(rng):
    x = np.abs(rng.randn(10, 37)).astype(np.float32)
    w = rng.randn(6, 37).astype(np.float32)
    b = rng.randn(6).astype(np.float32)
    y, status = lq.gemm(x, w, role="forward", bias=b, relu=True,
                        unsigned_input=True)
    cx, sx = _sawb(x, True, status["lhs_range"])
    cw, sw = _sawb(w, False, status["rhs_range"])
    acc = cx @ cw.T
    ref = np.maximum(acc.astype(np.float32) * np.float32(sx * sw) + b, 0)
    assert np.array_equal(y.view(np.uint32), ref.astype(np.float32).view(np.uint32))


@pytest.mark.parametrize("samples", [1, 2])
def test_backward_gemms_share_one_luq_sample(rng, samples):
    dy = (rng.randn(12, 9) * 1e-3).astype(np.float32)
    w = rng.randn(9, 20).astype(np.float32)
    x = rng.randn(12, 20).astype(np.float32)
    dx, st_dx = lq.gemm(dy, w, role="backward_data", seed=7, stream=2,
                        samples=samples)
    dw, st_dw = lq.gemm(dy, x, role="weight_grad", seed=7, stream=2,
                        samples=samples)
    cw, sw = _sawb(w, False, st_dx["rhs_range"])
    cx, sx = _sawb(x, False, st_dw["rhs_range"])
    acc_dx = np.zeros((12, 20), np.int64)
    acc_dw = np.zeros((9, 20), np.int64)
    for s in range(samples):
        codes, alpha, _, _ = lq.numerics.luq_encode(dy, 7, 2, s)
        g = luq_values(codes)
        acc_dx += g @ cw
        acc_dw += g.T @ cx
    for out, acc, step, status in ((dx, acc_dx, sw, st_dx),
                                   (dw, acc_dw, sx, st_dw)):
        scale = np.float32(np.float32(alpha) * step) * np.float32(1.0 / samples)
        ref = acc.astype(np.float32) * scale
        assert np.float32(status["lhs_scale"]) == np.float32(alpha)
        assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))


def test_errors_carry_the_runtime_message(rng):
    x = rng.randn(4, 6).astype(np.float32)
    w = rng.randn(5, 7).astype(np.float32)
    with pytest.raises(lq.Error, match="K"):
        lq.gemm(x, w, role="forward")
    with pytest.raises(lq.Error, match="unknown role"):
        lq.gemm(x, x, role="sideways")
    with pytest.raises(lq.Error, match="float64"):
        lq.quantize(x.astype(np.float64), "log4")
    with pytest.raises(lq.Error, match="contiguous"):
        lq.quantize(np.asfortranarray(rng.randn(5, 4).astype(np.float32)), "log4")
    with pytest.raises(lq.Error, match="unknown format"):
        lq.quantize(x, "int2")
    with pytest.raises(lq.Error, match="2-D"):
        lq.quantize(x.reshape(-1), "log4")


def test_compile_program_and_cache():
    program = """
    func.func @f(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>) -> tensor<4x6xf32> {
      %cx = lq.sawb_clip %x : tensor<4x8xf32>
      %qx, %sx, %n1, %o1 = lq.quantize %x range %cx : tensor<4x8xf32> -> !lq.qtensor<4x8x!lq.sint4>
      %cw = lq.sawb_clip %w : tensor<6x8xf32>
      %qw, %sw, %n2, %o2 = lq.quantize %w range %cw : tensor<6x8xf32> -> !lq.qtensor<6x8x!lq.sint4>
      %y = lq.matmul (%qx) scale %sx, %qw scale %sw {transpose_rhs, role = #lq.role<forward>}
          : (!lq.qtensor<4x8x!lq.sint4>), !lq.qtensor<6x8x!lq.sint4> -> tensor<4x6xf32>
      return %y : tensor<4x6xf32>
    }"""
    kernel = lq.compile_program(program)
    assert "lhs=sint4:f32:n rhs=sint4:f32:t" in kernel.spec.describe()
    rng = np.random.RandomState(3)
    x = rng.randn(4, 8).astype(np.float32)
    w = rng.randn(6, 8).astype(np.float32)
    y = np.empty((4, 6), np.float32)
    status = kernel.launch(x, w, y)
    ref, _ = lq.gemm(x, w, role="forward")
    assert np.array_equal(y, ref) and status["lhs_scale"] > 0
    # Loaded kernels are reused without asking the compile cache; after
    # clearing memory the cache answers (from disk, or by compiling).
    before = lq.cache_counters()
    lq.compile_program(program)
    assert lq.cache_counters() == before
    lq.clear_memory_cache()
    lq.compile_program(program)
    after = lq.cache_counters()
    assert (after["disk_hits"] + after["compiles"]
            == before["disk_hits"] + before["compiles"] + 1)
    with pytest.raises(lq.Error, match="invalid lq program"):
        lq.compile_program("func.func @f( {")
