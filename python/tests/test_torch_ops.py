"""torch.ops.lq.gemm and torch.ops.lq.quantize: lq's kernels in torch's
dispatcher, with Meta (shape) and Autograd kernels."""

import pytest
import torch

import lq
import lq.torch as lqt


def test_ops_run_lqs_kernels():
    torch.manual_seed(0)
    x, w, dy = torch.randn(9, 20), torch.randn(7, 20), torch.randn(9, 7)
    bias = torch.randn(7)
    want, _ = lq.gemm(x, w, role="forward", bias=bias, relu=True)
    assert torch.equal(torch.ops.lq.gemm(x, w, "forward", bias, relu=True),
                       want)
    common = dict(seed=11, stream=3, samples=2)
    for role, b in (("backward_data", w), ("weight_grad", x)):
        want, _ = lq.gemm(dy, b, role=role, max_estimate=0.5, **common)
        got = torch.ops.lq.gemm(dy, b, role, max_estimate=0.5, **common)
        assert torch.equal(got, want)
    codes, scale = torch.ops.lq.quantize(dy, "log4", seed=11, stream=3)
    want_codes, status = lq.quantize(dy, "log4", seed=11, stream=3)
    assert torch.equal(codes, want_codes)
    assert scale.dtype == torch.float32 and float(scale) == status["scale"]


def test_meta_kernels_give_shapes_without_running():
    meta = dict(device="meta")
    x, w = torch.empty(9, 20, **meta), torch.empty(7, 20, **meta)
    dy = torch.empty(9, 7, **meta)
    assert torch.ops.lq.gemm(x, w, "forward").shape == (9, 7)
    assert torch.ops.lq.gemm(dy, w, "backward_data").shape == (9, 20)
    out = torch.ops.lq.gemm(dy, x, "weight_grad", bf16_output=True)
    assert (out.shape, out.dtype, out.device.type) == ((7, 20),
                                                       torch.bfloat16, "meta")
    codes, scale = torch.ops.lq.quantize(torch.empty(5, 7, **meta), "sint4")
    assert (codes.shape, codes.dtype, scale.shape) == ((5, 4), torch.uint8,
                                                       ())
    with pytest.raises(lq.Error, match="unknown role 'sideways'"):
        torch.ops.lq.gemm(x, w, "sideways")


def test_fake_tensors_and_tracing_see_the_ops():
    from torch._subclasses import FakeTensorMode
    with FakeTensorMode():
        y = torch.ops.lq.gemm(torch.empty(4, 8), torch.empty(3, 8), "forward")
        assert y.shape == (4, 3)

    def forward(x, w):
        return torch.ops.lq.gemm(x, w, "forward", relu=True)

    traced = torch.jit.trace(forward, (torch.randn(4, 8), torch.randn(3, 8)))
    assert "lq::gemm" in str(traced.graph)
    x, w = torch.randn(6, 8), torch.randn(3, 8)
    assert torch.equal(traced(x, w), forward(x, w))


def test_forward_role_differentiates_with_lqs_backward_gemms():
    torch.manual_seed(0)
    layer = lqt.Linear(20, 7)
    x = torch.randn(9, 20)
    dy = torch.linspace(-1e-2, 1e-2, 63).reshape(9, 7)
    # The same computation through the layer and through the op, from the
    # same generator state: equal gradients, bit for bit.
    grads = []
    for through_op in (False, True):
        xi = x.clone().requires_grad_(True)
        weight = layer.weight.detach().clone().requires_grad_(True)
        bias = layer.bias.detach().clone().requires_grad_(True)
        torch.manual_seed(42)
        if through_op:
            y = torch.ops.lq.gemm(xi, weight, "forward", bias,
                                  stream=layer.stream)
        else:
            layer.weight, layer.bias = (torch.nn.Parameter(weight),
                                        torch.nn.Parameter(bias))
            y = layer(xi)
            weight, bias = layer.weight, layer.bias
        y.backward(dy)
        grads.append((y.detach(), xi.grad, weight.grad, bias.grad))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_backward_roles_are_not_differentiable():
    dy = torch.randn(4, 3, requires_grad=True)
    out = torch.ops.lq.gemm(dy, torch.randn(3, 5), "backward_data")
    with pytest.raises(lq.Error, match="not in role 'backward_data'"):
        out.sum().backward()
