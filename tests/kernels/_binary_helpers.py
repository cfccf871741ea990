"""Plain NumPy references shared by the binary-kernel tests (no onebit code involved)."""

from __future__ import annotations

import numpy as np

import onebit.kernels as K


def np_pack(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Reference packing: bit i % 32 of word i // 32 is (x[i] < 0), little-endian bit order."""
    bits = np.moveaxis(np.asarray(x) < 0, axis, -1)
    n = bits.shape[-1]
    nw = (n + 31) // 32
    padded = np.zeros(bits.shape[:-1] + (nw * 32,), dtype=np.uint64)
    padded[..., :n] = bits
    weights = np.uint64(1) << np.arange(32, dtype=np.uint64)
    words = (padded.reshape(bits.shape[:-1] + (nw, 32)) * weights).sum(-1).astype(np.uint32)
    return np.moveaxis(words, -1, axis)


def random_pm1(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def optimized_isas() -> list[str]:
    """The non-reference kernel families this CPU can run (may be empty)."""
    return [name for name in ("avx2", "avx512", "neon") if K.isa_available(name)]


def all_isas() -> list[str]:
    return ["reference"] + optimized_isas()
