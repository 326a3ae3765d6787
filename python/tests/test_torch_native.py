"""lq.torch.Linear's C++ autograd function (lq._lq_torch) against the
Python autograd.Function it stands in for: the same outputs and gradients
bit for bit, the same errors, the same fallbacks."""

import copy
import gc
import threading
import weakref

import pytest
import torch

import lq
import lq.torch as lqt

native = lqt._native
pytestmark = pytest.mark.skipif(
    native is None, reason="lq built without PyTorch's C++ headers")


@pytest.fixture
def python_path(monkeypatch):
    """Runs lq.torch with its Python autograd.Function only."""
    def use():
        monkeypatch.setattr(lqt, "_native", None)
    return use


def _step(layer, x, dy, seed):
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    y = layer(x)
    y.backward(dy)
    grads = [x.grad, layer.weight.grad.clone()]
    if layer.bias is not None:
        grads.append(layer.bias.grad.clone())
    layer.zero_grad(set_to_none=True)
    return [y.detach()] + grads, type(y.grad_fn).__name__


CASES = [
    dict(),
    dict(bias=False),
    dict(unsigned_input=True),
    dict(samples=2),
    dict(hindsight=True),
    dict(fnt=True),
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: str(o) or "default")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_matches_the_python_function(options, dtype, python_path):
    torch.manual_seed(0)
    layer = lqt.Linear(37, 19, **options)
    x = torch.randn(11, 37).to(dtype)
    if options.get("unsigned_input"):
        x = x.abs()
    dy = torch.randn(11, 19)
    # Two steps each, so that in-hindsight estimates and skipped-step
    # counts evolve through the layer's state on both paths alike.
    state = copy.deepcopy(layer.state_dict())
    native_results = [_step(layer, x, dy, seed) for seed in (1, 2)]
    layer.load_state_dict(state)
    python_path()
    python_results = [_step(layer, x, dy, seed) for seed in (1, 2)]
    for (n, n_fn), (p, p_fn) in zip(native_results, python_results):
        assert n_fn != p_fn == "_LinearFunctionBackward"
        assert len(n) == len(p)
        for a, b in zip(n, p):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_no_grad_and_inputs_without_grad_record_nothing():
    torch.manual_seed(0)
    layer = lqt.Linear(16, 8)
    x = torch.randn(4, 16)
    y = layer(x)
    assert y.grad_fn is not None
    with torch.no_grad():
        y0 = layer(x)
    layer.requires_grad_(False)
    y1 = layer(x)
    assert y0.grad_fn is None and y1.grad_fn is None
    assert torch.equal(y0, y) and torch.equal(y1, y)


def test_declined_inputs_take_the_python_path():
    torch.manual_seed(0)
    layer = lqt.Linear(16, 8)
    x = torch.randn(4, 16)
    w, b = layer.weight, layer.bias

    class Sub(torch.Tensor):
        pass

    declined = [
        (x.double(), w, b),                     # another dtype
        (x, w.detach().t().contiguous().t(), b),  # columns not contiguous
        (x.as_subclass(Sub), w, b),             # a tensor subclass
        (x, w, b.detach().double()),            # a float64 bias
        (x[None], w, b),                        # not 2-D
    ]
    for args in declined:
        assert native.linear(*args, layer, False) is None
    assert native.linear(x, w, b, layer, 1) is None  # not a bool
    # Through the layer the Python path then raises its own error.
    with pytest.raises(lq.Error, match="dtype torch.float64"):
        layer(x.double())


def test_runtime_errors_are_lq_errors():
    torch.manual_seed(0)
    layer = lqt.Linear(16, 8)
    x = torch.randn(4, 12)  # the weight has 16 columns
    with pytest.raises(lq.Error):
        native.linear(x, layer.weight, layer.bias, layer, False)


def test_saved_inputs_modified_in_place_are_refused():
    torch.manual_seed(0)
    layer = lqt.Linear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)
    y = layer(x * 1)
    with torch.no_grad():
        layer.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace"):
        y.sum().backward()


def test_errors_of_the_backward_reach_the_caller(monkeypatch):
    def failing(layer, dy, x, weight, bias_grad):
        raise lq.Error("backward failed on purpose")

    torch.manual_seed(0)
    layer = lqt.Linear(16, 8)
    y = layer(torch.randn(4, 16))
    native.setup(lq.gemm_spec, failing)
    try:
        with pytest.raises(lq.Error, match="on purpose"):
            y.sum().backward()
    finally:
        native.setup(lq.gemm_spec, lqt._linear_backward)
    y = layer(torch.randn(4, 16))
    y.sum().backward()
    assert layer.weight.grad is not None


def test_the_graph_keeps_what_backward_needs_but_not_the_layer():
    layer = lqt.Linear(16, 8, hindsight=True)
    alive = weakref.ref(layer)
    weight = layer.weight
    state = layer._lq
    y = layer(torch.randn(4, 16))
    del layer
    gc.collect()
    assert alive() is None
    y.sum().backward()
    assert weight.grad is not None and state.max_estimate is not None


def test_backward_on_autograd_threads():
    # Each thread's backward runs lq.torch's Python backward through the
    # C++ node, taking the GIL; all must finish with finite gradients of
    # the weight's shape (LUQ draws a new seed each step).
    torch.manual_seed(0)
    layers = [lqt.Linear(32, 16) for _ in range(4)]
    x = torch.randn(8, 32)
    failures = []

    def work(layer):
        for _ in range(10):
            layer.zero_grad(set_to_none=True)
            layer(x).sum().backward()
            if (layer.weight.grad.shape != layer.weight.shape or
                    not torch.isfinite(layer.weight.grad).all()):
                failures.append(1)

    threads = [threading.Thread(target=work, args=(l,)) for l in layers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.parametrize("path", ["native", "python"])
def test_an_empty_batch_has_zero_gradients(path, python_path):
    if path == "python":
        python_path()
    layer = lqt.Linear(16, 8)
    x = torch.randn(0, 16, requires_grad=True)
    y = layer(x)
    # The gradient of a sum over no rows comes with zero strides.
    y.sum().backward()
    assert y.shape == (0, 8) and x.grad.shape == (0, 16)
    assert torch.equal(layer.weight.grad, torch.zeros(8, 16))
    assert torch.equal(layer.bias.grad, torch.zeros(8))


def test_a_layer_that_keeps_its_output_is_collected():
    # An activation-capturing hook makes a cycle layer -> output -> graph;
    # the graph holds the layer's lq state, not the layer, so no cycle
    # runs through C++ where the collector cannot see it.
    layer = lqt.Linear(16, 8)
    layer.register_forward_hook(lambda m, i, o: setattr(m, "last", o))
    layer(torch.randn(4, 16))
    alive = weakref.ref(layer)
    del layer
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("grad", [True, False])
def test_a_trace_records_the_layer_not_its_allocation(grad):
    torch.manual_seed(0)
    layer = lqt.Linear(16, 8)
    with torch.set_grad_enabled(grad):
        traced = torch.jit.trace(layer, torch.randn(4, 16),
                                 check_trace=False)
        x = torch.randn(4, 16)
        assert torch.equal(traced(x), layer(x))
    assert "aten::empty" not in str(traced.graph)


@pytest.mark.parametrize("path", ["native", "python"])
def test_an_empty_batch_leaves_the_hindsight_estimate(path, python_path):
    if path == "python":
        python_path()
    torch.manual_seed(0)
    layer = lqt.Linear(16, 8, hindsight=True)
    layer(torch.randn(4, 16)).sum().backward()
    estimate = layer.max_estimate
    assert estimate is not None and estimate > 0
    layer(torch.randn(0, 16)).sum().backward()
    assert layer.max_estimate == estimate and layer.skipped_steps == 0


@pytest.mark.parametrize("frozen", [False, True])
def test_forward_mode_tangents_are_refused_as_on_the_python_path(frozen):
    import torch.autograd.forward_ad as fwad
    layer = lqt.Linear(16, 8)
    layer.requires_grad_(not frozen)
    with fwad.dual_level():
        x = fwad.make_dual(torch.randn(4, 16), torch.randn(4, 16))
        with pytest.raises(NotImplementedError, match="jvp"):
            layer(x)


def test_a_malformed_backward_result_is_an_error():
    torch.manual_seed(0)
    layer = lqt.Linear(16, 8)
    y = layer(torch.randn(4, 16))
    native.setup(lq.gemm_spec, lambda state, dy, x, w, b: (1, 2, 3))
    try:
        with pytest.raises(RuntimeError, match="returned a non-tensor"):
            y.sum().backward()
    finally:
        native.setup(lq.gemm_spec, lqt._linear_backward)


def test_the_lq_options_live_in_the_state_the_graph_holds():
    layer = lqt.Linear(16, 8, samples=4, hindsight=True, fnt=True)
    assert (layer._lq.samples, layer._lq.hindsight, layer._lq.fnt) == (
        4, True, True)
    layer.fnt = False
    assert layer._lq.fnt is False
    copy_ = copy.deepcopy(layer)
    copy_.samples = 2
    assert layer.samples == 4 and copy_._lq is not layer._lq
