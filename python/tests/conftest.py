import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.RandomState(1234)


def pack(codes):
    """Codes (one per element, any signed 4-bit range) as packed storage:
    two per byte, low nibble first, rows padded to whole bytes."""
    nibbles = (codes.astype(np.int16) & 15).astype(np.uint8)
    if nibbles.shape[1] % 2:
        nibbles = np.pad(nibbles, ((0, 0), (0, 1)))
    return nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)


def luq_values(codes):
    """Integer values of LUQ codes: bit 3 sign, bits 2..0 e, |v| = 2^(e-1)."""
    codes = codes.astype(np.int64)
    magnitude = (1 << (codes & 7)) >> 1
    return np.where(codes & 8, -magnitude, magnitude)


def to_bf16_bits(x):
    """f32 -> bf16 bits, round to nearest even."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)
