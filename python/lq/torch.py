"""lq.torch: linear layers whose three GEMMs run lq's 4-bit kernels.

    import torch, lq.torch
    model = torch.nn.Sequential(lq.torch.Linear(784, 256), torch.nn.ReLU(),
                                lq.torch.Linear(256, 10))
    # or: lq.torch.quantize_model(existing_model, skip=["head"])

Forward: SAWB int4 on inputs and weights (inputs unsigned where the layer
is told they are non-negative: unsigned_input, which quantize_model sets
for a Linear right after a ReLU). Backward: LUQ log4 on the output gradient, one sample shared by
the backward-data and weight-gradient GEMMs, SMP averaging and
in-hindsight max scaling as options. Seeds come from torch's generator, so
torch.manual_seed makes runs reproducible.
"""

import torch

from . import Error, gemm


def _float_tensor(t, name):
    if t.dtype not in (torch.float32, torch.bfloat16):
        raise Error(f"{name}: dtype {t.dtype} is not supported: expected "
                    "float32 or bfloat16")
    if t.dim() != 2:
        raise Error(f"{name}: expected a 2-D tensor, got shape "
                    f"{tuple(t.shape)}")
    if t.stride(1) != 1:
        raise Error(f"{name}: rows must be contiguous (strides {t.stride()}); "
                    "call .contiguous()")
    return t


class _LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        if x.device != weight.device:
            raise Error(f"input on {x.device} but weight on {weight.device}")
        _float_tensor(x, "input")
        # Signedness is the layer's option, never read off the data: a test
        # of x would synchronize the device on every forward.
        y, _ = gemm(x, weight.detach(), role="forward",
                    bias=None if bias is None else bias.detach(),
                    unsigned_input=layer.unsigned_input)
        ctx.save_for_backward(x, weight)
        ctx.layer = layer
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        layer = ctx.layer
        dy = _float_tensor(dy.contiguous().float(), "grad_output")
        # One draw of torch's generator per step: both GEMMs see one sample.
        seed = int(torch.randint(0, 2**62, (1,)).item())
        estimate = layer.max_estimate if layer.hindsight else None
        common = dict(samples=layer.samples, seed=seed, stream=layer.stream,
                      max_estimate=estimate)
        dx, status = gemm(dy, weight.detach().contiguous(),
                          role="backward_data", **common)
        dw, _ = gemm(dy, x, role="weight_grad",
                     unsigned_input=layer.unsigned_input, **common)
        layer._record(status)
        db = dy.sum(0) if ctx.has_bias else None
        return dx, dw, db, None


class Linear(torch.nn.Linear):
    """torch.nn.Linear with its forward, backward-data and weight-gradient
    GEMMs in lq kernels. samples: SMP samples of the gradient quantizer (a
    power of two); hindsight: scale gradients by an in-hindsight max
    estimate, (1 - eta) * max|dy| of the last step + eta * the estimate;
    unsigned_input: the inputs are non-negative (after a ReLU), so SAWB
    quantizes them unsigned, 0..15 (negative inputs would be clipped to 0)."""

    def __init__(self, in_features, out_features, bias=True, *, samples=1,
                 hindsight=False, eta=0.5, unsigned_input=False, device=None,
                 dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device,
                         dtype=dtype)
        if samples < 1 or samples > 64 or samples & (samples - 1):
            raise Error(f"samples must be a power of two in [1, 64], got "
                        f"{samples}")
        self.samples = samples
        self.hindsight = hindsight
        self.eta = eta
        self.unsigned_input = unsigned_input
        self.max_estimate = None
        # Drawn from torch's generator like the per-step seeds: a model
        # built after torch.manual_seed gets the same streams every run.
        self.stream = int(torch.randint(0, 2**31, (1,)).item())
        self.skipped_steps = 0

    def forward(self, x):
        shape = x.shape
        if x.dim() != 2:
            x = x.reshape(-1, shape[-1])
        y = _LinearFunction.apply(x.contiguous(), self.weight, self.bias, self)
        return y.reshape(*shape[:-1], self.out_features)

    def _record(self, status):
        if status["nonfinite"]:
            self.skipped_steps += 1
            return
        if self.hindsight:
            current = status["lhs_max"]
            self.max_estimate = current if self.max_estimate is None else (
                (1 - self.eta) * current + self.eta * self.max_estimate)

    def extra_repr(self):
        return (super().extra_repr() + f", samples={self.samples}, "
                f"hindsight={self.hindsight}")


_NONNEGATIVE = (torch.nn.ReLU, torch.nn.ReLU6)


def quantize_model(model, skip=(), **options):
    """Replaces every torch.nn.Linear of `model` (except the submodules named
    in `skip`, by their qualified names) with an lq.torch.Linear holding the
    same parameters. A Linear that follows a ReLU in a torch.nn.Sequential
    gets unsigned_input=True unless `options` says otherwise. Returns the
    model."""
    skip = set(skip)
    for name, module in list(model.named_modules()):
        previous = None
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            after_relu = (isinstance(module, torch.nn.Sequential) and
                          isinstance(previous, _NONNEGATIVE))
            previous = child
            if full in skip or type(child) is not torch.nn.Linear:
                continue
            layer_options = dict(options)
            layer_options.setdefault("unsigned_input", after_relu)
            layer = Linear(child.in_features, child.out_features,
                           bias=child.bias is not None,
                           device=child.weight.device, **layer_options)
            with torch.no_grad():
                layer.weight.copy_(child.weight)
                if child.bias is not None:
                    layer.bias.copy_(child.bias)
            setattr(module, child_name, layer)
    return model
