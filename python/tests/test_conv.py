"""lq.torch.Conv2d: the contract's three GEMMs over the im2col matrix."""

import io

import numpy as np
import pytest
import torch

import lq
import lq.torch as lqt

from conftest import luq_values

GEOMETRY = dict(kernel_size=(3, 3), dilation=(1, 1), padding=(1, 1),
                stride=(2, 2))


def _cols(x, geometry=GEOMETRY):
    cols = torch.nn.functional.unfold(x, **geometry)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1]).contiguous()


def _grad_output(shape):
    return torch.linspace(-1e-2, 1e-2, int(np.prod(shape))).reshape(shape)


def _step(layer, x, seed=42):
    x = x.clone().requires_grad_(True)
    y = layer(x)
    torch.manual_seed(seed)
    y.backward(_grad_output(y.shape))
    return (y.detach(), x.grad, layer.weight.grad.clone(),
            layer.bias.grad.clone())


@pytest.mark.parametrize("options", [{}, {"samples": 2},
                                     {"unsigned_input": True}])
def test_gradients_are_the_contracts_three_gemms(options):
    torch.manual_seed(0)
    layer = lqt.Conv2d(3, 5, 3, stride=2, padding=1, **options)
    x = torch.rand(2, 3, 9, 9) - (0 if options.get("unsigned_input") else 0.5)
    y, dx, dw, db = _step(layer, x)

    # y = Q(cols) Q(W2d)^T (+ bias), rows are output pixels (NHWC).
    cols = _cols(x)
    w2d = layer.weight.detach().reshape(5, -1)
    unsigned = options.get("unsigned_input", False)
    ref_y, _ = lq.gemm(cols, w2d, role="forward",
                       bias=layer.bias.detach(), unsigned_input=unsigned)
    assert y.shape == (2, 5, 5, 5)
    assert torch.equal(y, ref_y.reshape(2, 5, 5, 5).permute(0, 3, 1, 2))

    # One seed from torch's generator feeds both backward GEMMs.
    dy = _grad_output(y.shape).permute(0, 2, 3, 1).reshape(-1, 5).contiguous()
    torch.manual_seed(42)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    common = dict(seed=seed, stream=layer.stream,
                  samples=options.get("samples", 1))
    dcols, _ = lq.gemm(dy, w2d.contiguous(), role="backward_data", **common)
    ref_dw, _ = lq.gemm(dy, cols, role="weight_grad", unsigned_input=unsigned,
                        **common)
    ref_dx = torch.nn.functional.fold(
        dcols.reshape(2, 25, 27).transpose(1, 2), (9, 9), **GEOMETRY)
    assert torch.equal(dx, ref_dx)
    assert torch.equal(dw, ref_dw.reshape(5, 3, 3, 3))
    assert torch.equal(db, dy.sum(0))


def _direct_conv_int(qx, qw, stride, padding):
    """An integer convolution by its definition (no im2col): acc[n, o, i, j]
    = sum qx[n, c, i*s - p + ki, j*s - p + kj] qw[o, c, ki, kj]."""
    n, c, h, w = qx.shape
    o, _, kh, kw = qw.shape
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), np.int64)
    padded[:, :, padding:padding + h, padding:padding + w] = qx
    out_h = (h + 2 * padding - kh) // stride + 1
    out_w = (w + 2 * padding - kw) // stride + 1
    acc = np.zeros((n, o, out_h, out_w), np.int64)
    for ki in range(kh):
        for kj in range(kw):
            patch = padded[:, :, ki:ki + stride * out_h:stride,
                           kj:kj + stride * out_w:stride]
            acc += np.einsum("nchw,oc->nohw", patch, qw[:, :, ki, kj])
    return acc


def test_conv_matches_the_numerics_core():
    # The numerics core's codes (with the kernels' clip: SAWB's statistics
    # are sums whose last bits may depend on order, so the contract fixes
    # the scale, not the sum) and integer arithmetic by the definition of
    # a convolution, against the layer: bit for bit.
    torch.manual_seed(3)
    layer = lqt.Conv2d(2, 3, 3, stride=2, padding=1)
    x = torch.randn(2, 2, 5, 5)
    y, dx, dw, db = _step(layer, x, seed=9)
    cols = _cols(x)
    w2d = layer.weight.detach().reshape(3, -1)
    _, fwd = lq.gemm(cols, w2d, role="forward")

    def sawb(t, clip):
        codes, step, _, _ = lq.numerics.sawb_encode(
            t.reshape(t.shape[0], -1).numpy(), clip=clip)
        return codes.astype(np.int64).reshape(t.shape), np.float32(step)

    qx, sx = sawb(x, fwd["lhs_range"])
    qw, sw = sawb(layer.weight.detach(), fwd["rhs_range"])
    acc = _direct_conv_int(qx, qw, stride=2, padding=1)
    bias = layer.bias.detach().numpy()[None, :, None, None]
    ref_y = acc.astype(np.float32) * np.float32(sx * sw) + bias
    assert np.array_equal(y.numpy().view(np.uint32),
                          ref_y.astype(np.float32).view(np.uint32))

    # dy as [N*L, O]: LUQ's element index is its row-major index there.
    dy = _grad_output(y.shape).permute(0, 2, 3, 1).reshape(-1, 3).contiguous()
    torch.manual_seed(9)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    codes, alpha, _, _ = lq.numerics.luq_encode(dy.numpy(), seed,
                                                layer.stream, 0)
    g = luq_values(codes)  # [N*L, O]
    # dW[o, c, ki, kj] = sum over pixels of g * the input under the kernel:
    # the convolution of the input with g as the "kernel" of each pixel.
    gx = g.reshape(2, 3, 3, 3).transpose(0, 3, 1, 2)  # [N, O, 3, 3]
    padded = np.zeros((2, 2, 7, 7), np.int64)
    padded[:, :, 1:6, 1:6] = qx
    acc_dw = np.zeros((3, 2, 3, 3), np.int64)
    for ki in range(3):
        for kj in range(3):
            patch = padded[:, :, ki:ki + 6:2, kj:kj + 6:2]  # [N, C, 3, 3]
            acc_dw[:, :, ki, kj] = np.einsum("nohw,nchw->oc", gx, patch)
    scale = np.float32(np.float32(alpha) * sx)
    ref_dw = acc_dw.astype(np.float32) * scale
    assert np.array_equal(dw.numpy().view(np.uint32), ref_dw.view(np.uint32))
    # dcols = Q(dy) Q(W2d), folded back onto the input by torch.
    acc_dcols = g @ qw.reshape(3, -1)
    ref_dcols = torch.from_numpy(
        acc_dcols.astype(np.float32) * np.float32(np.float32(alpha) * sw))
    ref_dx = torch.nn.functional.fold(
        ref_dcols.reshape(2, 9, 18).transpose(1, 2), (5, 5), **GEOMETRY)
    assert torch.equal(dx, ref_dx)


@pytest.mark.parametrize("config", [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(3, 5), stride=(2, 1), padding=(0, 2)),
    dict(kernel_size=3, dilation=2, padding=2),
    dict(kernel_size=1, stride=2, bias=False),
    dict(kernel_size=5, padding="same"),
    dict(kernel_size=3, padding="valid"),
])
def test_shapes_and_values_follow_torch_conv2d(config):
    torch.manual_seed(1)
    reference = torch.nn.Conv2d(4, 6, **config)
    layer = lqt.Conv2d(4, 6, **config)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(3, 4, 11, 10, requires_grad=True)
    want = reference(x)
    got = layer(x)
    assert got.shape == want.shape
    # 4-bit operands: close to the fp32 convolution, not equal.
    error = (got - want).norm() / want.norm()
    assert 0 < error < 0.2, error
    got.sum().backward()
    assert x.grad.shape == x.shape
    assert layer.weight.grad.shape == layer.weight.shape
    # One image without a batch dimension, as torch.nn.Conv2d takes it.
    assert torch.equal(layer(x[0].detach()), layer(x[:1].detach())[0])


def test_hindsight_follows_the_gradient_max():
    torch.manual_seed(4)
    layer = lqt.Conv2d(2, 4, 3, padding=1, hindsight=True, eta=0.25)
    x = torch.randn(2, 2, 6, 6)
    _step(layer, x)
    first = layer.max_estimate
    assert first == float(_grad_output((2, 4, 6, 6)).abs().max())
    layer.weight.grad = layer.bias.grad = None
    _, dx, dw, _ = _step(layer, x, seed=5)
    dy = _grad_output((2, 4, 6, 6)).permute(0, 2, 3, 1).reshape(-1, 4)
    torch.manual_seed(5)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    geometry = dict(kernel_size=(3, 3), dilation=(1, 1), padding=(1, 1),
                    stride=(1, 1))
    ref_dw, _ = lq.gemm(dy.contiguous(), _cols(x, geometry),
                        role="weight_grad", seed=seed, stream=layer.stream,
                        max_estimate=first)
    assert torch.equal(dw, ref_dw.reshape(dw.shape))
    assert layer.max_estimate == 0.75 * first + 0.25 * first


def test_fnt_takes_fp32_backward_and_keeps_the_4bit_forward():
    torch.manual_seed(6)
    reference = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
    layer = lqt.Conv2d(3, 4, 3, stride=2, padding=1)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 8, 8)
    quantized = _step(layer, x)
    layer.weight.grad = layer.bias.grad = None
    assert lqt.set_fnt(layer) == 1 and layer.fnt
    fnt = _step(layer, x)
    assert torch.equal(fnt[0], quantized[0])  # forward: still 4-bit
    xr = x.clone().requires_grad_(True)
    reference(xr).backward(_grad_output(fnt[0].shape))
    torch.testing.assert_close(fnt[1], xr.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fnt[2], reference.weight.grad, rtol=1e-5,
                               atol=1e-7)
    assert not torch.equal(quantized[2], fnt[2])
    lqt.set_fnt(layer, False)
    assert not layer.fnt


def _model(**options):
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 3))
    return lqt.quantize_model(model, **options)


def _train(model, optimizer, batches):
    for x, labels in batches:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()


@pytest.mark.parametrize("options", [{}, {"samples": 2, "hindsight": True}])
def test_checkpoint_resumes_bit_for_bit(options):
    data = torch.Generator().manual_seed(11)
    batches = [(torch.randn(8, 1, 8, 8, generator=data),
                torch.randint(0, 3, (8,), generator=data)) for _ in range(6)]
    torch.manual_seed(0)
    model = _model(**options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, optimizer, batches[:3])
    saved = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": optimizer.state_dict(),
                "rng": torch.get_rng_state()}, saved)
    _train(model, optimizer, batches[3:])

    saved.seek(0)
    state = torch.load(saved)
    assert state["model"]["0._extra_state"]["format"] == "lq.torch.Conv2d"
    torch.manual_seed(1234)  # other weights and streams, then the state's
    resumed = _model(**options)
    resumed_optimizer = torch.optim.SGD(resumed.parameters(), lr=0.1,
                                        momentum=0.9)
    resumed.load_state_dict(state["model"])
    resumed_optimizer.load_state_dict(state["opt"])
    torch.set_rng_state(state["rng"])
    _train(resumed, resumed_optimizer, batches[3:])
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed[2].max_estimate == model[2].max_estimate
    assert sorted(lqt.lq_state(model)) == ["0", "2", "5"]


def test_lq_state_refuses_a_linear_state_in_a_conv():
    torch.manual_seed(2)
    conv = lqt.Conv2d(1, 2, 3)
    with pytest.raises(lq.Error, match="Conv2d is not an lq.torch.Conv2d"):
        conv.set_extra_state(lqt.Linear(2, 2).get_extra_state())
    # A torch.nn.Conv2d's state (a pretrained fp32 model) loads strictly.
    plain = torch.nn.Conv2d(1, 2, 3)
    conv.load_state_dict(plain.state_dict())
    assert torch.equal(conv.weight, plain.weight)


def test_quantize_model_converts_convolutions():
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3, stride=2, dilation=2, bias=False),
        torch.nn.BatchNorm2d(4),
        torch.nn.Conv2d(4, 4, 1), torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Conv2d(4, 2, 3, padding=1)))
    weights = model[2].weight.detach().clone()
    lqt.quantize_model(model, skip=["0"], samples=2)
    assert type(model[0]) is torch.nn.Conv2d
    assert isinstance(model[2], lqt.Conv2d) and isinstance(model[4], lqt.Conv2d)
    assert isinstance(model[6][0], lqt.Conv2d)
    assert model[2].unsigned_input and not model[4].unsigned_input
    assert model[2].samples == 2 and model[2].bias is None
    assert (model[2].stride, model[2].dilation) == ((2, 2), (2, 2))
    assert torch.equal(model[2].weight.detach(), weights)
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    assert model[2].weight.grad is not None

    grouped = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(lq.Error, match="0 is a Conv2d with groups=2.*skip="):
        lqt.quantize_model(grouped)
    lqt.quantize_model(grouped, skip=["0"])
    assert type(grouped[0]) is torch.nn.Conv2d


def test_bad_configurations_raise_clear_errors():
    with pytest.raises(lq.Error, match="groups=1 only, got groups=2"):
        lqt.Conv2d(4, 4, 3, groups=2)
    with pytest.raises(lq.Error, match="padding_mode='zeros' only, got "
                                       "'reflect'"):
        lqt.Conv2d(4, 4, 3, padding_mode="reflect")
    with pytest.raises(lq.Error, match="dtype torch.float64"):
        lqt.Conv2d(4, 4, 3, dtype=torch.float64)
    with pytest.raises(lq.Error, match="odd dilated kernel"):
        lqt.Conv2d(4, 4, 4, padding="same")
    with pytest.raises(lq.Error, match="power of two"):
        lqt.Conv2d(4, 4, 3, samples=3)
    layer = lqt.Conv2d(2, 3, 3)
    with pytest.raises(lq.Error, match="float64"):
        layer(torch.randn(1, 2, 5, 5, dtype=torch.float64))
    with pytest.raises(lq.Error, match="int64"):
        layer(torch.ones(1, 2, 5, 5, dtype=torch.int64))
    with pytest.raises(lq.Error, match="3 channels, the layer 2"):
        layer(torch.randn(1, 3, 5, 5))
    with pytest.raises(lq.Error, match=r"\[N, C, H, W\]"):
        layer(torch.randn(2, 5, 5, 1, 1))


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device: GPU tests of lq.torch skipped")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    layer = lqt.Conv2d(3, 8, 3, stride=2, padding=1)
    x = torch.randn(4, 3, 12, 12)
    cpu = _step(layer, x, seed=5)
    layer.cuda()
    layer.weight.grad = layer.bias.grad = None
    gpu = [t.cpu() for t in _step(layer, x.cuda(), seed=5)]
    # The GEMMs agree bit for bit (exact integer sums); fold's sums of the
    # overlapping patches may be ordered differently on the device.
    assert torch.equal(cpu[0], gpu[0]) and torch.equal(cpu[2], gpu[2])
    torch.testing.assert_close(cpu[1], gpu[1], rtol=1e-6, atol=1e-9)
