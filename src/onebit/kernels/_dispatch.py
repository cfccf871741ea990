"""Which kernel family runs, and the default thread count."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator

from onebit import _kernels

_KNOWN = ("reference", "avx2", "avx512", "neon")
_env = os.environ.get("ONEBIT_KERNELS", "")
if _env and _env not in _KNOWN + ("ref",):
    warnings.warn(
        f"ONEBIT_KERNELS={_env!r} is not one of {', '.join(_KNOWN)}; it is ignored",
        RuntimeWarning,
        stacklevel=2,
    )

_isa_lock = threading.Lock()


def cpu_features() -> dict[str, bool]:
    """The CPU features the dispatcher saw: ``{"avx2": ..., "avx512_vpopcnt": ...,
    "avx512_vnni": ..., "neon": ...}``."""
    return dict(_kernels.cpu_features())


def active_isa() -> str:
    """The kernel family in use now: ``"reference"``, ``"avx2"``, ``"avx512"`` or ``"neon"``."""
    return _kernels.active_isa()


def isa_available(name: str) -> bool:
    """Whether this CPU can run the kernels of ISA ``name``."""
    if name not in _KNOWN:
        raise ValueError(f"unknown ISA {name!r}; known: {', '.join(_KNOWN)}")
    return bool(_kernels.isa_available(name))


@contextlib.contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Run the kernels of one ISA inside a ``with`` block (tests, benchmarks).

    Raises ``ValueError`` if the CPU lacks it. Not meant to be switched from several threads at once.
    """
    if not isa_available(name):
        raise ValueError(f"this CPU cannot run the {name!r} kernels; available: "
                         + ", ".join(n for n in _KNOWN if isa_available(n)))
    with _isa_lock:
        previous = active_isa()
        _kernels.set_isa(name)
        try:
            yield
        finally:
            _kernels.set_isa(previous)


def default_num_threads() -> int:
    """Threads a kernel uses when the caller passes none: all cores unless set otherwise."""
    return int(_kernels.default_num_threads())


def set_default_num_threads(n: int) -> None:
    """Set the default thread count for onebit's kernels (``n <= 0``: all cores; at most 256
    threads run, larger counts are capped)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"num_threads must be an int, got {type(n).__name__}")
    if not -(2**31) <= n < 2**31:
        raise ValueError(f"num_threads must fit in 32 bits (<= 0: all cores), got {n}")
    _kernels.set_default_num_threads(n)
