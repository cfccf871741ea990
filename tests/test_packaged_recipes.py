"""Recipes ship inside the package: in the wheel, listed and found by name without a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from onebit.cli import main
from onebit.recipes import find_recipe, list_recipes, recipe_dir
from onebit.train.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
NAME = "bireal_fmnist_cnn_fashion_mnist"


def test_bare_name_finds_the_packaged_recipe(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert NAME in list_recipes() and len(list_recipes()) >= 10
    assert find_recipe(NAME) == find_recipe(NAME + ".yaml") == recipe_dir() / f"{NAME}.yaml"
    assert find_recipe("nope") is None and find_recipe("configs/" + NAME) is None
    cfg = load_config(NAME)
    assert cfg["name"] == NAME and [s["name"] for s in cfg["stages"]] == ["pretrain", "binary", "bn"]
    assert main(["train", "--config", NAME, "--print-config", "trainer.max_epochs=1"]) == 0
    assert "bn_reestimate" in capsys.readouterr().out
    assert main(["list", "recipes"]) == 0
    assert capsys.readouterr().out.split() == list_recipes()
    with pytest.raises(ConfigError, match="onebit list recipes"):
        load_config("bireal_nothing")


def test_repo_configs_path_is_the_packaged_directory():
    assert (REPO / "configs").resolve() == recipe_dir()
    assert load_config(REPO / "configs" / f"{NAME}.yaml") == load_config(NAME)


def test_wheel_holds_the_recipes_and_an_installed_copy_finds_them(tmp_path):
    """Build the pure-Python part of the wheel (no C++ build), unpack it as an installed package
    would be and list / load recipes from there, away from the repository."""
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-build-isolation",
                           "--no-deps", "-q", "--disable-pip-version-check",
                           "-C", "wheel.cmake=false", "-w", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = out.glob("onebit-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        packaged = sorted(Path(n).stem for n in names if n.startswith("onebit/recipes/")
                          and n.endswith(".yaml"))
        assert packaged == list_recipes()
        assert "onebit/recipes/__init__.py" in names
        site = tmp_path / "site"
        zf.extractall(site)
    code = (
        "import os, sys; sys.path += sys.argv[1].split(os.pathsep)\n"  # no .pth hooks
        "import onebit.recipes as r, onebit.cli as cli\n"
        "from onebit.train.config import load_config\n"
        "assert r.__file__.startswith(sys.argv[2]), r.__file__\n"
        f"cfg = load_config({NAME!r}); print(cfg['name'], len(cfg['stages']))\n"
        "sys.exit(cli.main(['list', 'recipes']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    third_party = os.pathsep.join(p for p in sys.path if p.endswith("site-packages"))
    proc = subprocess.run([sys.executable, "-S", "-c", code, third_party, str(site)], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.split()
    assert lines[:2] == [NAME, "3"] and lines[2:] == list_recipes()
