"""Every test here runs its PyTorch references on one thread (see ``tests/conftest.py``)."""

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    yield
