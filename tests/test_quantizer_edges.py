"""Edge cases of the quantizers' arguments and math that the main quantizer tests do not pin."""

from __future__ import annotations

import pytest

from onebit import quantizers


@pytest.mark.parametrize("cls", [quantizers.Sign, quantizers.StochasticSign, quantizers.ScaledSign,
                                 quantizers.MagnitudeAwareSign])
def test_clip_must_be_positive(cls):
    for bad in (0, 0.0, -1.0):
        with pytest.raises(ValueError, match="clip must be > 0"):
            cls(clip=bad)
    assert cls(clip=1e-6).clip == 1e-6
    assert cls(clip=None).clip is None
