"""Helpers shared by the command-line tests: a tiny recipe on the built-in synthetic data, and the
check that an error is one line with exit status 2."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from onebit.cli import main

#: a recipe that trains in seconds: a narrow fmnist_cnn, BNN, a few steps on synthetic data
TINY: dict[str, Any] = {
    "model": {"name": "fmnist_cnn", "width": 0.25, "hidden": 32},
    "method": {"name": "bnn"},
    "data": {"name": "synthetic", "batch_size": 32, "val_size": 128, "train_subset": 512,
             "test_subset": 128},
    "trainer": {"max_epochs": 1, "max_steps": 2, "progress_bar": False, "log_every_n_steps": 1},
    "output": {"tensorboard": False, "plots": False},
}


def tiny_recipe(directory: Path, **sections: dict[str, Any]) -> Path:
    """Write ``TINY`` (each given section updated with its entries, runs under
    ``directory/runs``) to ``directory/tiny.yaml``; return that path."""
    cfg = copy.deepcopy(TINY)
    for name, changes in sections.items():
        cfg[name].update(changes)
    cfg["output"]["dir"] = str(directory / "runs")
    path = directory / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def one_line_error(capsys, argv: list[str], *words: str) -> str:
    """Run the CLI; assert exit status 2 and one ``onebit: error:`` line on stderr holding every
    word, no traceback; return the line."""
    rc = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("onebit: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]
