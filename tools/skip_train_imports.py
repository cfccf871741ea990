"""pytest plugin for ``tools/check_wheel.sh``: run every test module that imports without the
``train`` extra, and report the others as skipped instead of collection errors.

Only a ``ModuleNotFoundError`` for one of the ``train`` extra's packages turns into a skip; any
other collection error (including a missing onebit module) still fails the run.
"""

from __future__ import annotations

import re

import pytest

#: top-level modules of the ``train`` extra (pyproject.toml) and what they pull in
TRAIN_MODULES = {"torch", "lightning", "pytorch_lightning", "yaml", "tqdm", "matplotlib",
                 "tensorboard", "torchmetrics"}

_MISSING = re.compile(r"ModuleNotFoundError: No module named '([\w.]+)'")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or not isinstance(collector, pytest.Module):
        return
    missing = _MISSING.findall(str(report.longrepr))
    if missing and missing[-1].split(".")[0] in TRAIN_MODULES:
        report.outcome = "skipped"
        report.longrepr = (str(collector.path), 0, f"Skipped: needs {missing[-1]} (train extra)")
