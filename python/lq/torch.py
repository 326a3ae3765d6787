"""lq.torch: linear layers whose three GEMMs run lq's 4-bit kernels.

    import torch, lq.torch
    model = torch.nn.Sequential(lq.torch.Linear(784, 256), torch.nn.ReLU(),
                                lq.torch.Linear(256, 10))
    # or: lq.torch.quantize_model(existing_model, skip=["head"])

Forward: SAWB int4 on inputs and weights (inputs unsigned where the layer
is told they are non-negative: unsigned_input, which quantize_model sets
for a Linear right after a ReLU). Backward: LUQ log4 on the output
gradient, one sample shared by the backward-data and weight-gradient GEMMs,
SMP averaging and in-hindsight max scaling as options.

Random streams: each backward step draws its seed from torch's generator
and each layer its base stream at construction, so torch.manual_seed makes
runs reproducible. Under torch.distributed the stream also mixes in the
rank (streams="per_rank", the default), so N data-parallel ranks draw N
independent LUQ samples whose all-reduced mean averages like SMP with N
samples; streams="shared" gives every rank the same samples. The layer's
state_dict carries its lq state (base stream, in-hindsight estimate,
skipped steps), so a checkpoint resumes bit for bit.

The GEMM and the quantizer are also operators of torch's dispatcher,
torch.ops.lq.gemm and torch.ops.lq.quantize (lq._torch_ops).
"""

import torch

from . import Error, gemm
from . import _torch_ops  # noqa: F401  (registers torch.ops.lq)

_STREAM_POLICIES = ("per_rank", "shared")
# The version of the lq state a Linear keeps in its state_dict.
_STATE_FORMAT = "lq.torch.Linear"
_STATE_VERSION = 1


def _splitmix64(x):
    """SplitMix64's finalizer: a bijection of 64-bit words whose outputs
    look independent for neighbouring inputs."""
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def rank_stream(base, rank):
    """The LUQ stream of a layer whose base stream is `base` on data-parallel
    rank `rank`: the high 32 bits of splitmix64(base << 32 | rank). Distinct
    (layer, rank) pairs get distinct 64-bit mixes, hence independent Philox
    streams (up to a 2^-32 chance that two 32-bit streams meet)."""
    if not 0 <= base < 2**32 or not 0 <= rank < 2**32:
        raise Error(f"stream {base} and rank {rank} must be in [0, 2^32)")
    return _splitmix64((base << 32) | rank) >> 32


def _distributed_rank():
    """This process's rank in torch.distributed's default group, or None
    outside data parallelism. A local query: no communication."""
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank()
    return None


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
        common = dict(samples=layer.samples, seed=seed,
                      stream=layer.luq_stream(), max_estimate=estimate)
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
    quantizes them unsigned, 0..15 (negative inputs would be clipped to 0);
    streams: "per_rank" (independent LUQ samples on every data-parallel
    rank) or "shared" (the same samples on every rank)."""

    def __init__(self, in_features, out_features, bias=True, *, samples=1,
                 hindsight=False, eta=0.5, unsigned_input=False,
                 streams="per_rank", device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device,
                         dtype=dtype)
        if samples < 1 or samples > 64 or samples & (samples - 1):
            raise Error(f"samples must be a power of two in [1, 64], got "
                        f"{samples}")
        if streams not in _STREAM_POLICIES:
            raise Error(f"streams must be 'per_rank' or 'shared', got "
                        f"{streams!r}")
        self.samples = samples
        self.streams = streams
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

    def luq_stream(self):
        """The stream of this layer's LUQ draws in this process: the base
        stream, mixed with the rank under torch.distributed unless the
        layer's streams are shared."""
        rank = _distributed_rank()
        if rank is None or self.streams == "shared":
            return self.stream
        return rank_stream(self.stream, rank)

    def get_extra_state(self):
        # Plain Python values: torch.save pickles them exactly (the
        # estimate is a double, the kernels' float32 argument is taken
        # from it at each step).
        return {"format": _STATE_FORMAT, "version": _STATE_VERSION,
                "stream": self.stream, "max_estimate": self.max_estimate,
                "skipped_steps": self.skipped_steps}

    def set_extra_state(self, state):
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise Error("the lq state of this Linear is not an lq.torch.Linear "
                        f"state: {state!r:.80}")
        if state.get("version") != _STATE_VERSION:
            raise Error(f"lq.torch.Linear state version {state.get('version')}"
                        f" is not {_STATE_VERSION}, the version this lq reads")
        estimate = state["max_estimate"]
        self.stream = int(state["stream"])
        self.max_estimate = None if estimate is None else float(estimate)
        self.skipped_steps = int(state["skipped_steps"])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, *args):
        # A torch.nn.Linear's state (a pretrained fp32 model) loads as it
        # would into torch.nn.Linear: the lq state stays this layer's own.
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, *args)
        key = prefix + "_extra_state"
        if key not in state_dict and key in missing_keys:
            missing_keys.remove(key)

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
                f"hindsight={self.hindsight}, streams={self.streams}")


def lq_state(model):
    """The lq state of every lq.torch.Linear in `model`, by qualified name.
    Under data parallelism it differs between ranks (each rank's
    in-hindsight estimate follows its own gradients), while the parameters
    do not: a checkpoint keeps one model state_dict and every rank's
    lq_state."""
    return {name: module.get_extra_state()
            for name, module in model.named_modules()
            if isinstance(module, Linear)}


def load_lq_state(model, state):
    """Restores what lq_state(model) returned, layer by layer; a layer
    missing on either side is an error."""
    layers = {name: module for name, module in model.named_modules()
              if isinstance(module, Linear)}
    if set(layers) != set(state):
        raise Error(f"the lq state holds layers {sorted(state)}, the model "
                    f"{sorted(layers)}")
    for name, layer in layers.items():
        layer.set_extra_state(state[name])


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
