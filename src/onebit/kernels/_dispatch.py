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


def worker_spin_us() -> int | None:
    """How long (microseconds) an idle worker thread of onebit's kernels spins for the next job
    before it sleeps; None: the default, a brief spin that covers the back-to-back kernel calls
    of one model call (see :func:`set_worker_spin_us`)."""
    us = int(_kernels.worker_spin_us())
    return None if us < 0 else us


def set_worker_spin_us(us: int | None) -> None:
    """Keep idle worker threads spinning for ``us`` microseconds before they sleep (None: the
    default brief spin). At more than one thread, a call that comes after a pause finds its
    workers asleep, and waking them can take milliseconds on a virtual machine; a spin longer
    than the pauses keeps them awake, at the price of a busy core while it lasts. The
    environment variable ``ONEBIT_WORKER_SPIN_US`` sets the initial value."""
    if us is None:
        _kernels.set_worker_spin_us(-1)
        return
    if isinstance(us, bool) or not isinstance(us, int):
        raise TypeError(f"us must be an int or None, got {type(us).__name__}")
    if not 0 <= us <= 60_000_000:
        raise ValueError(f"us must be in [0, 60000000] (at most a minute), got {us}")
    _kernels.set_worker_spin_us(us)
