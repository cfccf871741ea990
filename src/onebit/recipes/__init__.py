"""The training recipes shipped inside the package: ``<method>_<model>_<dataset>.yaml``.

They live next to this file, so they are installed with onebit (``pip install``) and found
without a source checkout; in the repository ``configs/`` points here. ``onebit list recipes``
prints their names, and ``onebit train --config <name>`` accepts a bare name (with or without
``.yaml``) as well as a path. This module reads no YAML and imports neither torch nor yaml, so
listing works in the runtime-only install.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["recipe_dir", "list_recipes", "find_recipe"]


def recipe_dir() -> Path:
    """The directory holding the packaged recipes."""
    return Path(__file__).resolve().parent


def list_recipes() -> list[str]:
    """The names (file stems) of the packaged recipes, sorted."""
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def find_recipe(name: str) -> Path | None:
    """The packaged recipe called ``name`` (``bnn_mlp_mnist`` or ``bnn_mlp_mnist.yaml``), or None
    when ``name`` is not a bare recipe name or no packaged recipe has it."""
    text = str(name)
    if not text or "/" in text or "\\" in text:
        return None
    stem = text[:-5] if text.endswith(".yaml") else text
    path = recipe_dir() / f"{stem}.yaml"
    return path if stem and path.is_file() else None
