"""NumPy arrays and torch tensors as the runtime's 2-D row-major views."""

import numpy as np

from ._lq import Error, TensorRef


def is_torch(t):
    return type(t).__module__.startswith("torch")


def dtype_name(t, name="tensor"):
    """f32, bf16 (torch.bfloat16, or raw bits as uint16) or packed4 (uint8)."""
    if is_torch(t):
        import torch
        names = {torch.float32: "f32", torch.bfloat16: "bf16",
                 torch.uint8: "packed4"}
        dtype = t.dtype
    else:
        names = {np.dtype(np.float32): "f32", np.dtype(np.uint16): "bf16",
                 np.dtype(np.uint8): "packed4"}
        dtype = t.dtype
    if dtype not in names:
        raise Error(f"{name}: dtype {dtype} is not supported: expected "
                    "float32, bfloat16 (uint16 bits for NumPy) or uint8 "
                    "(packed 4-bit codes)")
    return names[dtype]


def data_pointer(t):
    return t.data_ptr() if is_torch(t) else t.ctypes.data


def device_name(t):
    if is_torch(t):
        if t.device.type not in ("cpu", "cuda"):
            raise Error(f"tensors on {t.device} are not supported: expected "
                        "cpu or cuda")
        return t.device.type
    return "cpu"


def as_tensor_ref(t, name):
    """The TensorRef of a 2-D tensor whose rows are contiguous (a row pitch
    larger than the row is fine). Returns (ref, t): keep t alive while the
    runtime uses the ref."""
    if not hasattr(t, "shape") or len(t.shape) != 2:
        raise Error(f"{name}: expected a 2-D array or tensor, got shape "
                    f"{tuple(getattr(t, 'shape', ()))}")
    dtype = dtype_name(t, name)
    rows, cols = t.shape
    if is_torch(t):
        inner, pitch = t.stride(1), t.stride(0)
    else:
        inner = t.strides[1] // t.itemsize
        pitch = t.strides[0] // t.itemsize
    # A single row still needs contiguous elements: the runtime reads cols
    # consecutive values from the start. (Empty arrays have any strides.)
    if rows > 0 and ((cols > 1 and inner != 1) or
                     (rows > 1 and cols > 0 and pitch < cols)):
        raise Error(f"{name}: rows must be contiguous (strides "
                    f"{tuple(t.stride() if is_torch(t) else t.strides)}); "
                    "pass a contiguous copy")
    if rows <= 1:
        pitch = max(cols, 1)
    if dtype == "packed4":
        raise Error(f"{name}: uint8 packed codes are not a float operand")
    return TensorRef(data_pointer(t), dtype, rows, cols, pitch,
                     device_name(t)), t


def check_writable(t, name):
    """Outputs are written through their address: a read-only NumPy array
    (a broadcast, a view of immutable bytes) must not be."""
    if not is_torch(t) and not t.flags.writeable:
        raise Error(f"{name}: the array is read-only")


def packed_ref(t, cols):
    """The TensorRef of a freshly made [rows, ceil(cols / 2)] uint8 tensor
    of packed 4-bit codes holding `cols` codes per row."""
    return TensorRef(data_pointer(t), "packed4", t.shape[0], cols,
                     (cols + 1) // 2, device_name(t))


def empty_like_kind(t, shape, bf16=False, packed=False):
    """An uninitialized result of `t`'s kind (NumPy, or torch on t's
    device)."""
    if is_torch(t):
        import torch
        dtype = torch.uint8 if packed else torch.bfloat16 if bf16 else torch.float32
        return torch.empty(shape, dtype=dtype, device=t.device)
    dtype = np.uint8 if packed else np.uint16 if bf16 else np.float32
    return np.empty(shape, dtype=dtype)
