"""lq's GEMM and quantizer as operators of torch's dispatcher.

    y = torch.ops.lq.gemm(x, w, "forward")
    dx = torch.ops.lq.gemm(dy, w, "backward_data", seed=7, stream=3)
    codes, scale = torch.ops.lq.quantize(dy, "log4", seed=7)

CPU and CUDA kernels run lq's kernels (lq.gemm, lq.quantize); Meta kernels
give the result's shape and dtype without running anything, so tracing
and fake-tensor propagation (torch.compile on newer torch) see the ops;
an Autograd kernel makes the forward role differentiable with lq's own
backward GEMMs (LUQ on the output gradient, seeded from torch's
generator, as lq.torch.Linear does). The status dict of lq.gemm is not a
tensor and so is not returned: lq.torch.Linear, which needs it for
in-hindsight scaling and skipped steps, calls lq.gemm directly.
"""

import torch

from . import Error, _out_shape, gemm, quantize

_GEMM_SCHEMA = (
    "gemm(Tensor a, Tensor b, str role, Tensor? bias=None, bool relu=False, "
    "int samples=1, bool unsigned_input=False, int seed=0, int stream=0, "
    "float? max_estimate=None, bool bf16_output=False) -> Tensor")
_QUANTIZE_SCHEMA = (
    "quantize(Tensor x, str format, int seed=0, int stream=0, int sample=0, "
    "float? max_estimate=None) -> (Tensor codes, Tensor scale)")

def _gemm_kernel(a, b, role, bias=None, relu=False, samples=1,
                 unsigned_input=False, seed=0, stream=0, max_estimate=None,
                 bf16_output=False):
    out, _ = gemm(a, b, role=role, bias=bias, relu=relu, samples=samples,
                  unsigned_input=unsigned_input, seed=seed, stream=stream,
                  max_estimate=max_estimate, bf16_output=bf16_output)
    return out


def _gemm_meta(a, b, role, bias=None, relu=False, samples=1,
               unsigned_input=False, seed=0, stream=0, max_estimate=None,
               bf16_output=False):
    if a.dim() != 2 or b.dim() != 2:
        raise Error(f"expected 2-D operands, got shapes {tuple(a.shape)} and "
                    f"{tuple(b.shape)}")
    dtype = torch.bfloat16 if bf16_output else torch.float32
    return a.new_empty(_out_shape(role, a.shape, b.shape), dtype=dtype)


def _quantize_kernel(x, format, seed=0, stream=0, sample=0,
                     max_estimate=None):
    codes, status = quantize(x, format, seed=seed, stream=stream,
                             sample=sample, max_estimate=max_estimate)
    scale = torch.tensor(status["scale"], dtype=torch.float32)
    return codes, scale.to(x.device, non_blocking=True)


def _quantize_meta(x, format, seed=0, stream=0, sample=0, max_estimate=None):
    if x.dim() != 2:
        raise Error(f"x: expected a 2-D tensor, got shape {tuple(x.shape)}")
    rows, cols = x.shape
    return (x.new_empty((rows, (cols + 1) // 2), dtype=torch.uint8),
            x.new_empty((), dtype=torch.float32))


class _BelowAutograd:
    """Dispatches past the Autograd keys for the enclosed calls. torch's
    guard is a context manager on newer versions and an RAII object (alive
    while referenced) on older ones."""

    def __enter__(self):
        self.guard = torch._C._AutoDispatchBelowAutograd()
        if hasattr(self.guard, "__enter__"):
            self.guard.__enter__()

    def __exit__(self, *exc):
        if hasattr(self.guard, "__exit__"):
            self.guard.__exit__(*exc)
        del self.guard


class _GemmFunction(torch.autograd.Function):
    """The forward role's derivative is lq's backward pair: dx by the
    backward-data GEMM, dW by the weight-gradient GEMM, both from one LUQ
    sample of dy (one seed from torch's generator, the op's stream)."""

    @staticmethod
    def forward(ctx, a, b, bias, role, options):
        with _BelowAutograd():
            out = torch.ops.lq.gemm(a, b, role, bias, **options)
        ctx.role = role
        ctx.options = options
        ctx.has_bias = bias is not None
        ctx.save_for_backward(a, b)
        return out

    @staticmethod
    def backward(ctx, dy):
        if ctx.role != "forward" or ctx.options["relu"]:
            raise Error(f"torch.ops.lq.gemm is differentiable in its forward "
                        f"role without relu, not in role '{ctx.role}'"
                        f"{' with relu' if ctx.options['relu'] else ''}")
        x, weight = ctx.saved_tensors
        dy = dy.contiguous().float()
        seed = int(torch.randint(0, 2**62, (1,)).item())
        common = dict(samples=ctx.options["samples"], seed=seed,
                      stream=ctx.options["stream"])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.lq.gemm(dy, weight.contiguous(), "backward_data",
                                   **common)
        if ctx.needs_input_grad[1]:
            dw = torch.ops.lq.gemm(
                dy, x, "weight_grad",
                unsigned_input=ctx.options["unsigned_input"], **common)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(0)
        return dx, dw, db, None, None


def _gemm_autograd(a, b, role, bias=None, relu=False, samples=1,
                   unsigned_input=False, seed=0, stream=0, max_estimate=None,
                   bf16_output=False):
    options = dict(relu=relu, samples=samples, unsigned_input=unsigned_input,
                   seed=seed, stream=stream, max_estimate=max_estimate,
                   bf16_output=bf16_output)
    return _GemmFunction.apply(a, b, bias, role, options)


def _quantize_autograd(x, format, seed=0, stream=0, sample=0,
                       max_estimate=None):
    # Codes are integers and the scale a statistic: neither has a gradient.
    with _BelowAutograd():
        codes, scale = torch.ops.lq.quantize(x, format, seed, stream, sample,
                                             max_estimate)
    return codes, scale


def _register():
    library = torch.library.Library("lq", "DEF")
    library.define(_GEMM_SCHEMA)
    library.define(_QUANTIZE_SCHEMA)
    for key in ("CPU", "CUDA"):
        library.impl("gemm", _gemm_kernel, key)
        library.impl("quantize", _quantize_kernel, key)
    library.impl("gemm", _gemm_meta, "Meta")
    library.impl("quantize", _quantize_meta, "Meta")
    library.impl("gemm", _gemm_autograd, "Autograd")
    library.impl("quantize", _quantize_autograd, "Autograd")
    return library


# The registrations live as long as this object: the module holds it.
_LIBRARY = _register()
