"""NumPy-facing wrappers around onebit's compiled kernels (torch-free).

Arrays are validated here (dtype, contiguity, shapes) so that the C++ side only ever sees
well-formed buffers. ``onebit.kernels.isa()`` tells which kernel family runs; the environment
variable ``ONEBIT_KERNELS=reference`` forces the plain reference kernels.
"""

from __future__ import annotations

from onebit.kernels._dispatch import (
    active_isa,
    cpu_features,
    default_num_threads,
    isa_available,
    set_default_num_threads,
    use_isa,
)

__all__ = [
    "active_isa",
    "cpu_features",
    "default_num_threads",
    "isa_available",
    "set_default_num_threads",
    "use_isa",
]
