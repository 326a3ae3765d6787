"""lq: 4-bit training GEMMs (LUQ gradients, SAWB weights and activations).

NumPy arrays and torch tensors (CPU, or CUDA where lq was built with CUDA)
go in as 2-D views with contiguous rows; results come back as the same kind.

    import lq
    codes, status = lq.quantize(x, "log4", seed=1)       # packed 4-bit codes
    y, status = lq.gemm(x, w, role="forward")            # Q(x) Q(w)^T
    dx, status = lq.gemm(dy, w, role="backward_data", seed=7, stream=0)
    dw, status = lq.gemm(dy, x, role="weight_grad", seed=7, stream=0)

Errors raise lq.Error with the runtime's message.
"""

from . import _lq
from ._lq import Error, GemmSpec, cache_counters, clear_memory_cache, numerics
from ._tensors import (as_tensor_ref, check_writable, dtype_name,
                       empty_like_kind, is_torch)

__all__ = ["Error", "GemmSpec", "Program", "numerics", "quantize", "gemm",
           "gemm_spec", "compile_program", "cache_counters",
           "clear_memory_cache"]

# The three GEMMs of a linear layer y = x W^T: formats and transposes of the
# operands (GemmSpec::forward / backwardData / weightGrad).
_ROLES = {
    "forward": ("sint4", False, "sint4", True),        # x[B,I], W[O,I]
    "backward_data": ("log4", False, "sint4", False),  # dy[B,O], W[O,I]
    "weight_grad": ("log4", True, "sint4", False),     # dy[B,O], x[B,I]
}

_kernels = {}


def _role_formats(role, unsigned_input):
    """(lhs format, lhs transposed, rhs format, rhs transposed) of a role's
    GEMM, x quantized unsigned where asked."""
    if role not in _ROLES:
        raise Error(f"unknown role '{role}': expected forward, backward_data "
                    "or weight_grad")
    lhs_format, lhs_t, rhs_format, rhs_t = _ROLES[role]
    if unsigned_input:
        if role == "forward":
            lhs_format = "uint4"
        elif role == "weight_grad":
            rhs_format = "uint4"
        else:
            raise Error("unsigned_input applies to x, an operand of the "
                        "forward and weight_grad GEMMs")
    return lhs_format, lhs_t, rhs_format, rhs_t


def _out_shape(role, a_shape, b_shape):
    """The output's [rows, cols] of a role's GEMM of operands as stored."""
    _, lhs_t, _, rhs_t = _role_formats(role, False)
    return (a_shape[1] if lhs_t else a_shape[0],
            b_shape[0] if rhs_t else b_shape[1])


def gemm_spec(role, a_dtype="f32", b_dtype="f32", *, unsigned_input=False,
              bias=False, relu=False, samples=1, hindsight=False,
              output="f32", target="host"):
    """The GemmSpec that lq.gemm compiles for a role's GEMM (dtypes "f32",
    "bf16" or "packed4"; target "host", "sm_80" or "sm_90a")."""
    lhs_format, lhs_t, rhs_format, rhs_t = _role_formats(role, unsigned_input)
    return GemmSpec(lhs_format, a_dtype, lhs_t, rhs_format, b_dtype, rhs_t,
                    samples=samples, hindsight=hindsight, bias=bias,
                    relu=relu, output=output, target=target)


def _kernel(spec):
    key = spec.describe()
    if key not in _kernels:
        _kernels[key] = _lq.compile(spec)
    return _kernels[key]


def _target(t):
    if not is_torch(t) or t.device.type != "cuda":
        return "host"
    import torch
    major, minor = torch.cuda.get_device_capability(t.device)
    if major < 8:
        raise Error(f"{t.device} has compute capability {major}.{minor}: "
                    "lq's GPU kernels need sm_80 or newer")
    return "sm_90a" if (major, minor) == (9, 0) else "sm_80"


def _cuda_stream(t):
    if is_torch(t) and t.device.type == "cuda":
        import torch
        return torch.cuda.current_stream(t.device).cuda_stream
    return 0


def _bias_pointer(bias):
    """(address, length) of a bias vector, (0, 0) for none. The kernel reads
    `length` consecutive floats from the address."""
    if bias is None:
        return 0, 0
    if len(bias.shape) != 1 or dtype_name(bias, "bias") != "f32":
        raise Error("bias must be a 1-D float32 tensor")
    step = bias.stride(0) if is_torch(bias) else bias.strides[0] // 4
    if bias.shape[0] > 1 and step != 1:
        raise Error("bias: elements must be contiguous; pass a contiguous "
                    "copy")
    if is_torch(bias):
        return bias.data_ptr(), bias.shape[0]
    return bias.ctypes.data, bias.shape[0]


def gemm(a, b, *, role, out=None, bias=None, relu=False, samples=1,
         unsigned_input=False, seed=0, stream=0, max_estimate=None,
         bf16_output=False):
    """One GEMM of a linear layer in 4 bits with an exact int32 sum.

    role "forward": a = x [B, I], b = W [O, I] -> y [B, O];
    "backward_data": a = dy [B, O], b = W [O, I] -> dx [B, I];
    "weight_grad": a = dy [B, O], b = x [B, I] -> dW [O, I].
    LUQ draws from (seed, stream): both backward GEMMs of a layer must use
    the same pair. unsigned_input quantizes the activation operand (x)
    unsigned. max_estimate selects in-hindsight scaling of dy. Returns
    (out, status dict).
    """
    # Host tensors and plain arguments: one call into C++, which finds the
    # kernel by a small key (gemm_spec makes its spec the first time). It
    # answers None where it does not go; then the general path runs and
    # says what is wrong, if anything.
    done = _lq.gemm_host(a, b, role, out, bias, relu, samples,
                         unsigned_input, seed, stream, max_estimate,
                         bf16_output, gemm_spec, True)
    if done is not None:
        return done
    return _gemm_general(a, b, role, out, bias, relu, samples,
                         unsigned_input, seed, stream, max_estimate,
                         bf16_output)


def _gemm_general(a, b, role, out, bias, relu, samples, unsigned_input, seed,
                  stream, max_estimate, bf16_output):
    """lq.gemm for every kind of tensor and argument, in Python."""
    # A bad role or option is reported before the operands are looked at.
    _role_formats(role, unsigned_input)
    a_ref, _ = as_tensor_ref(a, "a")
    b_ref, _ = as_tensor_ref(b, "b")
    if out is None:
        out = empty_like_kind(a, _out_shape(role, a.shape, b.shape),
                              bf16=bf16_output)
    out_ref, _ = as_tensor_ref(out, "out")
    check_writable(out, "out")
    bias_ptr, bias_length = _bias_pointer(bias)
    spec = gemm_spec(role, dtype_name(a, "a"), dtype_name(b, "b"),
                     samples=samples, hindsight=max_estimate is not None,
                     bias=bias is not None, relu=relu,
                     output=dtype_name(out, "out"), target=_target(a),
                     unsigned_input=unsigned_input)
    status = _kernel(spec).launch(
        a_ref, b_ref, out_ref, bias=bias_ptr, bias_length=bias_length,
        seed=seed, stream=stream, max_estimate=max_estimate or 0.0,
        cuda_stream=_cuda_stream(a))
    return out, status


def quantize(x, format, *, seed=0, stream=0, sample=0, max_estimate=None):
    """Quantizes a 2-D f32/bf16 tensor to packed 4-bit codes (two per byte,
    low nibble first, rows padded to whole bytes), as the GEMM kernels do.
    Returns (codes, status) with scale, nonfinite, overflow and range."""
    from ._tensors import packed_ref
    x_ref, _ = as_tensor_ref(x, "x")
    rows, cols = x.shape
    codes = empty_like_kind(x, (rows, (cols + 1) // 2), packed=True)
    codes_ref = packed_ref(codes, cols)
    status = _lq.quantize(x_ref, codes_ref, format, seed=seed, stream=stream,
                          sample=sample, max_estimate=max_estimate,
                          cuda_stream=_cuda_stream(x))
    return codes, status


class Program:
    """The kernel of the one lq.matmul of an lq program (MLIR text)."""

    def __init__(self, text):
        self.kernel = _lq.compile_program(text)

    @property
    def spec(self):
        return self.kernel.spec

    def launch(self, a, b, out, *, bias=None, seed=0, stream=0,
               max_estimate=0.0):
        """Runs the kernel on float operands a and b (as stored: transposed
        where the program's lq.matmul says so) into `out`; returns the
        status dict."""
        a_ref, _ = as_tensor_ref(a, "a")
        b_ref, _ = as_tensor_ref(b, "b")
        out_ref, _ = as_tensor_ref(out, "out")
        check_writable(out, "out")
        bias_ptr, bias_length = _bias_pointer(bias)
        return self.kernel.launch(a_ref, b_ref, out_ref, bias=bias_ptr,
                                  bias_length=bias_length, seed=seed,
                                  stream=stream, max_estimate=max_estimate,
                                  cuda_stream=_cuda_stream(a))


def compile_program(text):
    """Compiles an lq program's lq.matmul (cached): a Program to launch."""
    return Program(text)
