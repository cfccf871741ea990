"""Fixtures shared by the test directories (pytest also puts this directory on ``sys.path``, so
the helper modules here, e.g. ``_deploy_helpers``, import by name from any test file)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """PyTorch on one thread for a module's tests, then back: the reference runs of the deploy
    and runtime tests are tiny, and one thread avoids thread-pool overhead on a busy CPU."""
    torch = pytest.importorskip("torch")  # here, not at the top: the torch-free tests share this file
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
