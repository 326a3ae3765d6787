"""lq.torch.Linear: the three GEMMs of the spec, reproducibly seeded."""

import numpy as np
import pytest
import torch

import lq
import lq.torch as lqt


def _step(layer, x):
    x = x.clone().requires_grad_(True)
    y = layer(x)
    y.backward(torch.linspace(-1e-2, 1e-2, y.numel()).reshape(y.shape))
    return y.detach(), x.grad, layer.weight.grad.clone(), layer.bias.grad.clone()


def test_gradients_are_the_specs_three_gemms():
    torch.manual_seed(0)
    layer = lqt.Linear(20, 7)
    x = torch.randn(9, 20)
    torch.manual_seed(42)
    y, dx, dw, db = _step(layer, x)

    weight, bias = layer.weight.detach(), layer.bias.detach()
    ref_y, _ = lq.gemm(x, weight, role="forward", bias=bias)
    dy = torch.linspace(-1e-2, 1e-2, y.numel()).reshape(y.shape)
    torch.manual_seed(42)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    ref_dx, _ = lq.gemm(dy, weight, role="backward_data", seed=seed,
                        stream=layer.stream)
    ref_dw, _ = lq.gemm(dy, x, role="weight_grad", seed=seed,
                        stream=layer.stream)
    assert torch.equal(y, ref_y)
    assert torch.equal(dx, ref_dx)
    assert torch.equal(dw, ref_dw)
    assert torch.equal(db, dy.sum(0))


def test_manual_seed_makes_runs_reproducible():
    results = []
    for seed in (3, 3, 4):
        torch.manual_seed(0)
        layer = lqt.Linear(16, 8, samples=2)
        x = torch.randn(5, 16)
        torch.manual_seed(seed)
        results.append(_step(layer, x))
    assert all(torch.equal(a, b) for a, b in zip(results[0], results[1]))
    assert not torch.equal(results[0][1], results[2][1])


def _backward(layer, x, dy):
    x = x.clone().requires_grad_(True)
    layer(x).backward(dy)
    return x.grad, layer.weight.grad.clone()


def test_hindsight_tracks_the_gradient_max():
    torch.manual_seed(1)
    eta = 0.25
    layer = lqt.Linear(8, 4, hindsight=True, eta=eta)
    x = torch.randn(6, 8)
    dy1 = torch.linspace(-1e-2, 1e-2, 24).reshape(6, 4)
    dy2 = 3 * dy1
    # The first step has no estimate: its max pass sets it to max |dy|.
    _backward(layer, x, dy1)
    first = layer.max_estimate
    assert first == float(dy1.abs().max())
    # The second step is scaled by the estimate, not by its own max: its
    # gradients are the GEMMs given that estimate, and differ from the
    # GEMMs with a max pass (3x the estimate, so codes saturate).
    layer.weight.grad = None
    torch.manual_seed(7)
    dx, dw = _backward(layer, x, dy2)
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2**62, (1,)).item())
    weight = layer.weight.detach()
    common = dict(seed=seed, stream=layer.stream)
    given_dx, status = lq.gemm(dy2, weight, role="backward_data",
                               max_estimate=first, **common)
    given_dw, _ = lq.gemm(dy2, x, role="weight_grad", max_estimate=first,
                          **common)
    fresh_dx, _ = lq.gemm(dy2, weight, role="backward_data", **common)
    assert torch.equal(dx, given_dx) and torch.equal(dw, given_dw)
    assert not torch.equal(dx, fresh_dx)
    assert status["overflow"] > 0
    # The update rule: (1 - eta) * this step's max |dy| + eta * estimate.
    current = float(dy2.abs().max())
    assert layer.max_estimate == (1 - eta) * current + eta * first


def test_signedness_is_the_layers_option_not_the_datas():
    torch.manual_seed(2)
    x = torch.rand(5, 12)  # non-negative, but the layer is not told so
    signed = lqt.Linear(12, 3)
    unsigned = lqt.Linear(12, 3, unsigned_input=True)
    with torch.no_grad():
        unsigned.weight.copy_(signed.weight)
        unsigned.bias.copy_(signed.bias)
    weight, bias = signed.weight.detach(), signed.bias.detach()
    want_signed, _ = lq.gemm(x, weight, role="forward", bias=bias)
    want_unsigned, _ = lq.gemm(x, weight, role="forward", bias=bias,
                               unsigned_input=True)
    assert not torch.equal(want_signed, want_unsigned)
    assert torch.equal(signed(x).detach(), want_signed)
    assert torch.equal(unsigned(x).detach(), want_unsigned)


def test_quantize_model_marks_layers_after_a_relu_unsigned():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, 3))
    lqt.quantize_model(model)
    assert [model[i].unsigned_input for i in (0, 2, 4)] == [False, True, False]
    other = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(4, 2))
    lqt.quantize_model(other, unsigned_input=False)
    assert other[1].unsigned_input is False


def test_quantize_model_swaps_linear_layers():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 3))
    weights = model[0].weight.detach().clone()
    lqt.quantize_model(model, skip=["2"])
    assert isinstance(model[0], lqt.Linear)
    assert type(model[2]) is torch.nn.Linear
    assert torch.equal(model[0].weight.detach(), weights)
    model(torch.randn(2, 4)).sum().backward()
    assert model[0].weight.grad is not None


def test_bad_inputs_raise_clear_errors():
    layer = lqt.Linear(6, 3)
    with pytest.raises(lq.Error, match="float64"):
        layer(torch.randn(2, 6, dtype=torch.float64))
    with pytest.raises(RuntimeError):
        layer(torch.randn(2, 5))  # shape mismatch
    with pytest.raises(lq.Error, match="contiguous"):
        lq.gemm(torch.randn(6, 4).t(), torch.randn(3, 6), role="forward")
    with pytest.raises(lq.Error, match="meta"):
        lq.gemm(torch.randn(2, 6, device="meta"), torch.randn(3, 6),
                role="forward")
    with pytest.raises(lq.Error, match="power of two"):
        lqt.Linear(4, 4, samples=3)


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="no CUDA device: GPU tests of lq.torch skipped")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    layer = lqt.Linear(32, 16)
    x = torch.randn(8, 32)
    torch.manual_seed(5)
    cpu = _step(layer, x)
    layer.cuda()
    layer.weight.grad = None
    layer.bias.grad = None
    torch.manual_seed(5)
    gpu = _step(layer, x.cuda())
    for a, b in zip(cpu, gpu):
        assert torch.equal(a, b.cpu())


def test_fnt_backward_is_fp32_and_forward_stays_4bit():
    torch.manual_seed(8)
    layer = lqt.Linear(12, 5)
    x = torch.randn(7, 12)
    quantized = _step(layer, x)
    layer.weight.grad = layer.bias.grad = None
    model = torch.nn.Sequential(layer, torch.nn.ReLU())
    assert lqt.set_fnt(model) == 1
    fnt = _step(layer, x)
    dy = torch.linspace(-1e-2, 1e-2, 35).reshape(7, 5)
    weight = layer.weight.detach()
    assert torch.equal(fnt[0], quantized[0])
    assert torch.equal(fnt[1], dy @ weight)
    assert torch.equal(fnt[2], dy.t() @ x)
    assert "fnt=True" in repr(layer)
    lqt.set_fnt(model, False)
    again = _step(layer, x)  # 4-bit gradients again
    assert not torch.equal(again[2], fnt[2])
