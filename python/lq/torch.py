"""lq.torch: linear and convolution layers whose three GEMMs run lq's
4-bit kernels.

    import torch, lq.torch
    model = torch.nn.Sequential(lq.torch.Linear(784, 256), torch.nn.ReLU(),
                                lq.torch.Linear(256, 10))
    # or: lq.torch.quantize_model(existing_model, skip=["head"])

Forward: SAWB int4 on inputs and weights (inputs unsigned where the layer
is told they are non-negative: unsigned_input, which quantize_model sets
for a layer right after a ReLU). Backward: LUQ log4 on the output
gradient, one sample shared by the backward-data and weight-gradient GEMMs,
SMP averaging and in-hindsight max scaling as options. A Conv2d runs the
same three GEMMs over its im2col matrix (torch's unfold; fold for the
input gradient). FNT (fine-tuning in high precision): a layer's `fnt`
option, or set_fnt(model), takes the backward GEMMs in fp32 while the
forward stays 4-bit.

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

import warnings

import torch

from . import Error, _lq, gemm, gemm_spec
from . import _torch_ops  # noqa: F401  (registers torch.ops.lq)

try:
    # Linear's forward as a C++ autograd function (built where PyTorch's
    # C++ headers were found); else the Python Function below serves.
    from . import _lq_torch as _native
except ImportError:
    _native = None

_STREAM_POLICIES = ("per_rank", "shared")
# The version of the lq state a layer keeps in its state_dict.
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


def _float_dtype(t, name):
    if t.dtype not in (torch.float32, torch.bfloat16):
        raise Error(f"{name}: dtype {t.dtype} is not supported: expected "
                    "float32 or bfloat16")
    return t


def _float_tensor(t, name):
    _float_dtype(t, name)
    if t.dim() != 2:
        raise Error(f"{name}: expected a 2-D tensor, got shape "
                    f"{tuple(t.shape)}")
    # As the kernels read a matrix: a row of one element, or no rows at
    # all (an empty batch's gradient has zero strides), has no layout.
    if t.stride(1) != 1 and t.size(0) > 0 and t.size(1) > 1:
        raise Error(f"{name}: rows must be contiguous (strides {t.stride()}); "
                    "call .contiguous()")
    return t


def _check_input(x, weight):
    if x.device != weight.device:
        raise Error(f"input on {x.device} but weight on {weight.device}")
    _float_dtype(x, "input")


def _forward_host(layer, x, weight, bias):
    """y = Q(x) Q(weight)^T (+ bias), x [B, I] and weight [O, I], through
    lq.gemm's fast path (host tensors, checked as it goes), or None where
    that path does not go. The kernels only read the tensors' memory:
    nothing needs detaching."""
    # Signedness is the layer's option, never read off the data: a test
    # of x would synchronize the device on every forward.
    return _lq.gemm_host(x, weight, "forward", None, bias, False, 1,
                         layer.unsigned_input, 0, 0, None, False, gemm_spec,
                         False)


def _forward_general(layer, x, weight, bias):
    """_forward_host's product on any device, with checks that name the
    layer's tensors."""
    _check_input(x, weight)
    y, _ = gemm(_float_tensor(x, "input"), weight, role="forward", bias=bias,
                unsigned_input=layer.unsigned_input)
    return y


def _forward(layer, x, weight, bias):
    y = _forward_host(layer, x, weight, bias)
    return _forward_general(layer, x, weight, bias) if y is None else y


def _forward_gemm(ctx, layer, x, weight, bias):
    """_forward, noting in ctx what backward needs besides the saved
    tensors."""
    y = _forward(layer, x, weight, bias)
    ctx.layer = layer
    ctx.has_bias = bias is not None
    return y


class _LinearFunction(torch.autograd.Function):
    # A small layer's forward is a few microseconds, a third of them this
    # Function's own: each call and attribute here counts.
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        y = _lq.gemm_host(x, weight, "forward", None, bias, False, 1,
                          layer.unsigned_input, 0, 0, None, False, gemm_spec,
                          False)
        if y is None:
            y = _forward_general(layer, x, weight, bias)
        ctx.state = layer._lq
        ctx.save_for_backward(x, weight)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        # needs_input_grad[2] is False without a bias.
        dx, dw, db = _linear_backward(ctx.state, dy, x, weight,
                                      ctx.needs_input_grad[2])
        return dx, dw, db, None


def _linear_backward(state, dy, x, weight, bias_grad):
    """(dx, dW, db) of a linear layer's forward y = x weight^T + bias, with
    the layer's _LqState: both autograd functions' backward (the Python one
    above and _lq_torch's)."""
    dy = _float_tensor(dy.contiguous().float(), "grad_output")
    dx, dw = _backward_gemms(state, dy, weight.detach().contiguous(), x)
    return dx, dw, dy.sum(0) if bias_grad else None


if _native is not None:
    try:
        _native.setup(gemm_spec, _linear_backward)
    except (ImportError, AttributeError) as e:  # built for another _lq
        warnings.warn(f"lq: {e}; lq.torch.Linear runs its Python "
                      "autograd.Function")
        _native = None


def _backward_gemms(state, dy, weight, x):
    """The backward-data and weight-gradient GEMMs of a layer whose forward
    was y[B, O] = x[B, I] weight[O, I]^T: (dx, dW), with the layer's
    _LqState. With its fnt option they are fp32 GEMMs of the unquantized
    operands."""
    if state.fnt:
        return dy.matmul(weight.float()), dy.t().matmul(x.float())
    # One draw of torch's generator per step: both GEMMs see one sample.
    seed = int(torch.randint(0, 2**62, (1,)).item())
    estimate = state.max_estimate if state.hindsight else None
    common = dict(samples=state.samples, seed=seed,
                  stream=state.luq_stream(), max_estimate=estimate)
    dx, status = gemm(dy, weight, role="backward_data", **common)
    dw, _ = gemm(dy, x, role="weight_grad",
                 unsigned_input=state.unsigned_input, **common)
    # An empty batch measured no gradient: its max of 0 is no estimate.
    if dy.shape[0] > 0:
        state.record(status)
    return dx, dw


class _LqState:
    """A layer's lq options and state: the gradient quantizer's options,
    the LUQ stream, the in-hindsight estimate, the count of skipped steps.
    Autograd graphs hold this, not the layer: a layer that keeps its own
    output (a forward hook capturing activations) would otherwise be a
    cycle through the C++ graph, which Python's collector cannot see."""

    __slots__ = ("samples", "streams", "hindsight", "eta", "unsigned_input",
                 "fnt", "max_estimate", "stream", "skipped_steps")

    def luq_stream(self):
        """The stream of the layer's LUQ draws in this process: the base
        stream, mixed with the rank under torch.distributed unless the
        layer's streams are shared."""
        rank = _distributed_rank()
        if rank is None or self.streams == "shared":
            return self.stream
        return rank_stream(self.stream, rank)

    def record(self, status):
        """A backward step's status: a skipped step, or the next
        in-hindsight estimate."""
        if status["nonfinite"]:
            self.skipped_steps += 1
            return
        if self.hindsight:
            current = status["lhs_max"]
            self.max_estimate = current if self.max_estimate is None else (
                (1 - self.eta) * current + self.eta * self.max_estimate)


def _state_property(name):
    return property(lambda layer: getattr(layer._lq, name),
                    lambda layer, value: setattr(layer._lq, name, value),
                    doc=f"the layer's {name} (its _LqState's)")


class _LqLayer:
    """What lq.torch's layers share beside their GEMMs' shapes: the options
    of the gradient quantizer, the LUQ stream, the in-hindsight estimate,
    the count of skipped steps and the lq state in the state_dict. Mixed
    in before the torch layer, whose __init__ runs first."""

    # The "format" of the layer's lq state: a state of another kind of
    # layer is refused.
    _state_format = None

    def _init_lq(self, samples, hindsight, eta, unsigned_input, streams,
                 fnt):
        if samples < 1 or samples > 64 or samples & (samples - 1):
            raise Error(f"samples must be a power of two in [1, 64], got "
                        f"{samples}")
        if streams not in _STREAM_POLICIES:
            raise Error(f"streams must be 'per_rank' or 'shared', got "
                        f"{streams!r}")
        self._lq = _LqState()
        self.samples = samples
        self.streams = streams
        self.hindsight = hindsight
        self.eta = eta
        self.unsigned_input = unsigned_input
        self.fnt = fnt
        self.max_estimate = None
        # Drawn from torch's generator like the per-step seeds: a model
        # built after torch.manual_seed gets the same streams every run.
        self.stream = int(torch.randint(0, 2**31, (1,)).item())
        self.skipped_steps = 0

    def luq_stream(self):
        """The stream of this layer's LUQ draws in this process: the base
        stream, mixed with the rank under torch.distributed unless the
        layer's streams are shared."""
        return self._lq.luq_stream()

    def get_extra_state(self):
        # Plain Python values: torch.save pickles them exactly (the
        # estimate is a double, the kernels' float32 argument is taken
        # from it at each step). fnt is not state: the training loop
        # chooses it per epoch, as it does the learning rate.
        return {"format": self._state_format, "version": _STATE_VERSION,
                "stream": self.stream, "max_estimate": self.max_estimate,
                "skipped_steps": self.skipped_steps}

    def set_extra_state(self, state):
        kind = type(self).__name__
        if (not isinstance(state, dict) or
                state.get("format") != self._state_format):
            raise Error(f"the lq state of this {kind} is not an "
                        f"{self._state_format} state: {state!r:.80}")
        if state.get("version") != _STATE_VERSION:
            raise Error(f"{self._state_format} state version "
                        f"{state.get('version')} is not {_STATE_VERSION}, "
                        "the version this lq reads")
        estimate = state["max_estimate"]
        self.stream = int(state["stream"])
        self.max_estimate = None if estimate is None else float(estimate)
        self.skipped_steps = int(state["skipped_steps"])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, *args):
        # A torch layer's state (a pretrained fp32 model) loads as it would
        # into the torch layer: the lq state stays this layer's own.
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, *args)
        key = prefix + "_extra_state"
        if key not in state_dict and key in missing_keys:
            missing_keys.remove(key)

    def extra_repr(self):
        return (super().extra_repr() + f", samples={self.samples}, "
                f"hindsight={self.hindsight}, streams={self.streams}" +
                (", fnt=True" if self.fnt else ""))


for _name in _LqState.__slots__:
    setattr(_LqLayer, _name, _state_property(_name))
del _name


class Linear(_LqLayer, torch.nn.Linear):
    """torch.nn.Linear with its forward, backward-data and weight-gradient
    GEMMs in lq kernels. samples: SMP samples of the gradient quantizer (a
    power of two); hindsight: scale gradients by an in-hindsight max
    estimate, (1 - eta) * max|dy| of the last step + eta * the estimate;
    unsigned_input: the inputs are non-negative (after a ReLU), so SAWB
    quantizes them unsigned, 0..15 (negative inputs would be clipped to 0);
    streams: "per_rank" (independent LUQ samples on every data-parallel
    rank) or "shared" (the same samples on every rank); fnt: backward
    GEMMs in fp32 (fine-tuning in high precision), forward still 4-bit."""

    _state_format = "lq.torch.Linear"

    def __init__(self, in_features, out_features, bias=True, *, samples=1,
                 hindsight=False, eta=0.5, unsigned_input=False,
                 streams="per_rank", fnt=False, device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device,
                         dtype=dtype)
        self._init_lq(samples, hindsight, eta, unsigned_input, streams, fnt)

    def forward(self, x):
        if x.dim() != 2:
            shape = x.shape
            y = self.forward(x.reshape(-1, shape[-1]))
            return y.reshape(*shape[:-1], self.out_features)
        x = x.contiguous()
        # What self.weight and self.bias give, read from the parameter
        # table where they are plain parameters: each attribute look-up
        # through torch.nn.Module costs a third of a microsecond, a tenth
        # of a small GEMM. Parametrizations and weight_norm take them out
        # of the table; then the attributes compute them.
        table = self._parameters
        if "weight" in table and "bias" in table:
            weight, bias = table["weight"], table["bias"]
        else:
            weight, bias = self.weight, self.bias
        if _native is not None:
            state = self._lq
            y = _native.linear(x, weight, bias, state, state.unsigned_input)
            if y is not None:
                return y
        # Without autograd (no_grad, inference) the GEMM alone: an
        # autograd.Function costs more than a small GEMM. A trace must
        # record the Function (a PythonOp), not the output's allocation.
        if not torch.is_grad_enabled() and not torch._C._get_tracing_state():
            return _forward(self, x, weight, bias)
        return _LinearFunction.apply(x, weight, bias, self)


def _pair(value, name):
    if isinstance(value, int):
        return (value, value)
    if (isinstance(value, (tuple, list)) and len(value) == 2 and
            all(isinstance(v, int) for v in value)):
        return tuple(value)
    raise Error(f"{name} must be an int or a pair of ints, got {value!r}")


def _im2col(x, geometry):
    """x [N, C, H, W] as the im2col matrix [N * L, C * kh * kw]: a row per
    output pixel (image-major), the GEMMs' activation operand."""
    cols = torch.nn.functional.unfold(x, **geometry)  # [N, C*kh*kw, L]
    # contiguous: for one image the reshape is a view with strided rows.
    return cols.transpose(1, 2).reshape(-1, cols.shape[1]).contiguous()


class _Conv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        _check_input(x, weight)
        n, _, height, width = x.shape
        out_channels = weight.shape[0]
        cols = _im2col(x, layer._geometry())
        y = _forward_gemm(ctx, layer, cols,
                          weight.detach().reshape(out_channels, -1), bias)
        out_h, out_w = layer._output_size(height, width)
        # Rows are output pixels: [N*L, O] is NHWC, torch wants NCHW.
        y = y.reshape(n, out_h, out_w, out_channels).permute(0, 3, 1, 2)
        # The im2col matrix (kh*kw times the input) is kept for the weight
        # gradient: unfolding the input again costs about as much as the
        # 4-bit GEMM it feeds.
        ctx.save_for_backward(cols, weight)
        ctx.input_shape = (n, height, width)
        return y.contiguous()

    @staticmethod
    def backward(ctx, dy):
        cols, weight = ctx.saved_tensors
        layer = ctx.layer
        geometry = layer._geometry()
        n, height, width = ctx.input_shape
        out_channels = weight.shape[0]
        dy = _float_tensor(
            dy.float().permute(0, 2, 3, 1).reshape(-1, out_channels)
            .contiguous(), "grad_output")
        dcols, dw = _backward_gemms(
            layer._lq, dy, weight.detach().reshape(out_channels, -1).contiguous(),
            cols)
        dcols = dcols.reshape(n, -1, cols.shape[1]).transpose(1, 2)
        dx = torch.nn.functional.fold(dcols, (height, width), **geometry)
        db = dy.sum(0) if ctx.has_bias else None
        return dx, dw.reshape(weight.shape), db, None


class Conv2d(_LqLayer, torch.nn.Conv2d):
    """torch.nn.Conv2d with its forward, backward-data and weight-gradient
    GEMMs in lq kernels, over the im2col matrix cols [N*L, C*kh*kw] (L
    output pixels per image): y = Q(cols) Q(W)^T, dcols = Q(dy) Q(W) folded
    back onto the input, dW = Q(dy)^T Q(cols), with dy as [N*L, O]. The lq
    options are Linear's. groups must be 1 and padding_mode "zeros" (the
    zero padding of unfold)."""

    _state_format = "lq.torch.Conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", *, samples=1, hindsight=False,
                 eta=0.5, unsigned_input=False, streams="per_rank",
                 fnt=False, device=None, dtype=None):
        if groups != 1:
            raise Error(f"lq.torch.Conv2d supports groups=1 only, got groups="
                        f"{groups}: a grouped convolution is a batch of "
                        "GEMMs, not one")
        if padding_mode != "zeros":
            raise Error(f"lq.torch.Conv2d supports padding_mode='zeros' only, "
                        f"got {padding_mode!r}")
        if dtype is not None and dtype not in (torch.float32, torch.bfloat16):
            raise Error(f"lq.torch.Conv2d: dtype {dtype} is not supported: "
                        "expected float32 or bfloat16")
        super().__init__(in_channels, out_channels, kernel_size,
                         stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias, padding_mode=padding_mode,
                         device=device, dtype=dtype)
        self._init_lq(samples, hindsight, eta, unsigned_input, streams, fnt)
        self._padding = self._explicit_padding()

    def _explicit_padding(self):
        # unfold pads both sides alike: "same" is that when the dilated
        # kernel's extent is odd (torch pads the extra row of an even one
        # on one side only).
        if self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            pads = []
            for k, d in zip(self.kernel_size, self.dilation):
                extent = d * (k - 1)
                if extent % 2:
                    raise Error("lq.torch.Conv2d: padding='same' needs an odd "
                                f"dilated kernel, got kernel_size "
                                f"{self.kernel_size}, dilation "
                                f"{self.dilation}; give the padding instead")
                pads.append(extent // 2)
            return tuple(pads)
        return _pair(self.padding, "padding")

    def _geometry(self):
        return dict(kernel_size=self.kernel_size, dilation=self.dilation,
                    padding=self._padding, stride=self.stride)

    def _output_size(self, height, width):
        return tuple(
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip((height, width), self._padding,
                                        self.dilation, self.kernel_size,
                                        self.stride))

    def forward(self, x):
        if x.dim() == 3:  # one image, as torch.nn.Conv2d takes it
            return self.forward(x.unsqueeze(0)).squeeze(0)
        if x.dim() != 4:
            raise Error(f"lq.torch.Conv2d: expected an input [N, C, H, W] "
                        f"or [C, H, W], got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise Error(f"lq.torch.Conv2d: input has {x.shape[1]} channels, "
                        f"the layer {self.in_channels}")
        return _Conv2dFunction.apply(x, self.weight, self.bias, self)


def _lq_layers(model):
    return {name: module for name, module in model.named_modules()
            if isinstance(module, _LqLayer)}


def set_fnt(model, enabled=True):
    """Fine-tuning in high precision (FNT, the paper's last epochs): with
    `enabled`, every lq layer of `model` takes its backward-data and
    weight-gradient GEMMs in fp32 on the unquantized gradient, weights and
    inputs, while its forward GEMM stays 4-bit (the model trained is the
    4-bit-forward model). Returns the number of layers set."""
    layers = _lq_layers(model)
    for layer in layers.values():
        layer.fnt = bool(enabled)
    return len(layers)


def lq_state(model):
    """The lq state of every lq.torch layer (Linear, Conv2d) in `model`, by
    qualified name.
    Under data parallelism it differs between ranks (each rank's
    in-hindsight estimate follows its own gradients), while the parameters
    do not: a checkpoint keeps one model state_dict and every rank's
    lq_state."""
    return {name: module.get_extra_state()
            for name, module in _lq_layers(model).items()}


def load_lq_state(model, state):
    """Restores what lq_state(model) returned, layer by layer; a layer
    missing on either side is an error."""
    layers = _lq_layers(model)
    if set(layers) != set(state):
        raise Error(f"the lq state holds layers {sorted(state)}, the model "
                    f"{sorted(layers)}")
    for name, layer in layers.items():
        layer.set_extra_state(state[name])


_NONNEGATIVE = (torch.nn.ReLU, torch.nn.ReLU6)


def _convert(child, name, options):
    """The lq layer that replaces torch layer `child`, or None when `child`
    is not a torch.nn.Linear or torch.nn.Conv2d."""
    if type(child) is torch.nn.Linear:
        return Linear(child.in_features, child.out_features,
                      bias=child.bias is not None,
                      device=child.weight.device, **options)
    if type(child) is not torch.nn.Conv2d:
        return None
    if child.groups != 1 or child.padding_mode != "zeros":
        raise Error(f"quantize_model: {name} is a Conv2d with groups="
                    f"{child.groups}, padding_mode={child.padding_mode!r}; "
                    "lq.torch.Conv2d has groups=1 and zero padding only: "
                    "keep it in skip=")
    return Conv2d(child.in_channels, child.out_channels, child.kernel_size,
                  stride=child.stride, padding=child.padding,
                  dilation=child.dilation, bias=child.bias is not None,
                  device=child.weight.device, **options)


def quantize_model(model, skip=(), **options):
    """Replaces every torch.nn.Linear and torch.nn.Conv2d of `model` (except
    the submodules named in `skip`, by their qualified names: the paper
    keeps the first and last layers in high precision) with an lq.torch
    layer holding the same parameters. A layer that follows a ReLU in a
    torch.nn.Sequential gets unsigned_input=True unless `options` says
    otherwise. Returns the model."""
    skip = set(skip)
    for name, module in list(model.named_modules()):
        previous = None
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            after_relu = (isinstance(module, torch.nn.Sequential) and
                          isinstance(previous, _NONNEGATIVE))
            previous = child
            if full in skip:
                continue
            layer_options = dict(options)
            layer_options.setdefault("unsigned_input", after_relu)
            layer = _convert(child, full, layer_options)
            if layer is None:
                continue
            with torch.no_grad():
                layer.weight.copy_(child.weight)
                if child.bias is not None:
                    layer.bias.copy_(child.bias)
            setattr(module, child_name, layer)
    return model
