"""Argument checks shared by the kernel wrappers: every error names the argument and the fix."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
import os
from typing import Any

import numpy as np

from onebit.kernels._dispatch import default_num_threads

MAX_INT32 = 2**31 - 1


def check_geometry(values: dict[str, int]) -> None:
    """ValueError naming the first of ``values`` (sizes, strides, padding) above 2^31 - 1, the
    limit the compiled kernels take."""
    for name, v in values.items():
        if v > MAX_INT32:
            raise ValueError(f"{name} must be <= 2^31 - 1, got {v}")


def words_for(n: int) -> int:
    """Number of uint32 words that hold ``n`` bits: ``ceil(n / 32)``."""
    return (int(n) + 31) // 32


def require_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as a Python int ``>= minimum`` (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def require_array(x: Any, name: str, dtype: type, ndim: int | None = None,
                  contiguous: bool = True) -> np.ndarray:
    """Checks that ``x`` is a NumPy array of ``dtype`` (and ``ndim``), C-contiguous, non-empty."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__} "
                        f"(use np.asarray({name}, dtype=np.{np.dtype(dtype).name}))")
    if x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype).name}, got {x.dtype} "
                        f"(use {name}.astype(np.{np.dtype(dtype).name}))")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d array")
    if 0 in x.shape:
        raise ValueError(f"{name} has a zero-sized dimension (shape {x.shape}); nothing to compute")
    if contiguous and not x.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray({name}))")
    return x


def optional_vector(v: Any, name: str, length: int, dtype: type = np.float32) -> np.ndarray | None:
    """``None``, or a 1-D array-like of ``length`` numbers converted to a contiguous ``dtype`` array."""
    if v is None:
        return None
    try:
        arr = np.ascontiguousarray(np.asarray(v), dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 1-D array of {length} numbers: {exc}") from None
    if arr.ndim == 0:
        arr = np.full(length, arr, dtype=dtype)
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {arr.shape}")
    return arr


def flip_vector(v: Any, length: int) -> np.ndarray | None:
    """``None``, or ``[length]`` booleans (bool, or integers 0 and 1 only) as a contiguous bool array."""
    if v is None:
        return None
    arr = np.asarray(v)
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "iu" or arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError("flip must hold booleans (True / False, or 0 / 1), got "
                             f"{arr.ravel()[:4].tolist()}; build it with "
                             "onebit.kernels.sign_thresholds")
    return optional_vector(arr.astype(np.bool_), "flip", length, dtype=np.bool_)


def no_nan(arr: np.ndarray | None, name: str) -> np.ndarray | None:
    """``arr`` unchanged, or ValueError if it holds a NaN (+/-inf stay allowed)."""
    if arr is not None and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; every value must be a number (+/-inf allowed)")
    return arr


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # not POSIX: no limit known
        return 1 << 62


def check_memory(shape: tuple[int, ...], itemsize: int, what: str, hint: str) -> None:
    """ValueError, before anything is allocated, if an array of ``shape`` would need more bytes
    than this machine's physical memory (e.g. a huge padding); the message names ``hint``."""
    nbytes = math.prod(int(d) for d in shape) * itemsize
    total = _physical_memory()
    if nbytes > total:
        raise ValueError(f"{what} {tuple(int(d) for d in shape)} would need {_gib(nbytes)}, more "
                         f"than this machine's {_gib(total)} of memory; {hint}")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**40:.1f} TiB" if nbytes >= 2**40 else f"{nbytes / 2**30:.1f} GiB"


def check_tail_bits(last_words: np.ndarray, n: int, name: str) -> None:
    """Raises if any bit past position ``n`` is set in the last packed word of a row."""
    if n % 32 == 0:
        return
    mask = np.uint32((1 << (n % 32)) - 1)
    if np.any(last_words & ~mask):
        raise ValueError(f"{name} has nonzero bits past its {n} bits in the last word; the tail bits "
                         "must be 0 (pack with onebit.kernels.pack_bits, and check the bit count "
                         "you passed)")


def resolve_threads(num_threads: Any) -> int:
    """``None`` -> the default thread count; otherwise an int in [1, 2^31 - 1]."""
    if num_threads is None:
        return default_num_threads()
    n = require_int(num_threads, "num_threads", 1)
    if n > MAX_INT32:
        raise ValueError(f"num_threads must be <= {MAX_INT32}, got {n}")
    return n


def pair(value: Any, name: str, minimum: int) -> tuple[int, int]:
    """``value`` (an int, or an ``(h, w)`` pair of ints) as a pair of Python ints ``>= minimum``:
    onebit's one reading of a 2-D size argument, for the kernels and the torch layers alike.
    TypeError for a non-integer, ValueError for a wrong length or a value below ``minimum``
    (fast path for plain ints: layers call this on every inference)."""
    if type(value) is int:
        out = (value, value)
    elif type(value) in (tuple, list) and len(value) == 2 and all(type(v) is int for v in value):
        out = (value[0], value[1])
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return require_int(value[0], name, minimum), require_int(value[1], name, minimum)
    else:
        v = require_int(value, name, minimum)
        return v, v
    if out[0] < minimum or out[1] < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out
