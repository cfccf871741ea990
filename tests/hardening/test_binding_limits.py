"""The compiled module ``onebit._kernels`` rejects every size that would let a kernel read or write
out of bounds (overflow-checked products in csrc/bindings/checked.h), and never crashes.

Each call runs in a subprocess: before the checks, size products wrapped around int64 and matched
empty arrays, and the kernels then wrote far past them (a segfault, not an exception).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_PRELUDE = """
import numpy as np
from onebit import _kernels as K
u32 = lambda n=0: np.empty(n, np.uint32)
f32 = lambda n=0: np.empty(n, np.float32)
"""

CALLS = {
    "pack_bits": "K.pack_bits(f32(), 2**32, 2**37, 1, u32())",
    "unpack_bits": "K.unpack_bits(u32(), 2**32, 2**37, 1, f32())",
    "bgemm": "K.bgemm(u32(), u32(), 2**32, 2**32, 2**37, 'int32', None, None, None, None, None, "
             "None, None, np.empty(0, np.int32), 1)",
    "bgemm_rows_wrap": "K.bgemm(u32(1), u32(1), 1, 2**62, 1, 'int32', None, None, None, None, "
                       "None, None, None, np.empty(0, np.int32), 1)",
    "PreparedRows": "K.PreparedRows(u32(), 2**32, 2**37)",
    "PreparedFilters": "K.PreparedFilters(u32(), 2**32, 2**32, 1, 1)",
    "bconv2d": "K.bconv2d(u32(), u32(1), 2**32, 2**32, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, "
               "'int32', None, None, None, None, None, None, None, np.empty(0, np.int32), 1)",
    "bconv2d_taps_wrap": "K.bconv2d(u32(1), u32(1), 1, 1, 1, 2**40, 1, 2**20, 2**20, 1, 1, "
                         "2**20, 2**20, 2**20, 2**20, 0, 'int32', None, None, None, None, None, "
                         "None, None, np.empty(1, np.int32), 1)",
    "adder_int8_padding": "K.adder_int8_conv2d(np.zeros((1, 2, 2, 1), np.int8), "
                          "np.zeros((1, 1, 1, 1), np.int8), 0, f32(1), f32(1), "
                          "np.empty((1, 2, 2, 1), np.float32), 2**62, 2**62, 2**61, 2**61, 1)",
    "adder_f32_padding": "K.adder_conv2d_forward(np.zeros((1, 1, 2, 2), np.float32), "
                         "np.zeros((1, 1, 1, 1), np.float32), np.empty((1, 1, 2, 2), np.float32), "
                         "2**62, 2**62, 2**61, 2**61, 1)",
    "float_maxpool_padding": "K.float_maxpool2d(np.zeros((1, 2, 2, 1), np.float32), "
                             "np.empty((1, 1, 1, 1), np.float32), 2**40, 2**40, 2**62, 2**62, "
                             "2**39, 2**39, 1, 1, False, 1)",
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_bad_sizes_raise_value_error_not_crash(name):
    code = _PRELUDE + textwrap.dedent(f"""
        try:
            {CALLS[name]}
        except ValueError as exc:
            print("ValueError:", exc)
        else:
            print("accepted")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{name} crashed the process (status {proc.returncode}): {proc.stderr[-500:]}"
    assert proc.stdout.startswith("ValueError:"), proc.stdout + proc.stderr


def test_valid_calls_still_work():
    import numpy as np

    from onebit import _kernels as K

    x = np.array([[1.0, -2.0, 0.0, -0.5]], np.float32)
    out = np.empty((1, 1), np.uint32)
    K.pack_bits(x, 1, 4, 1, out)
    assert out[0, 0] == 0b1010
