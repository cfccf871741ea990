"""What a run leaves behind: trained weights (safetensors + JSON config), metrics curves (PNG),
``results.json``; and loading weights back for evaluation.

Weights are stored as ``model.safetensors`` (no pickle: safe to load from elsewhere) whose
metadata holds ``format = "onebit.train.weights"``, ``version`` and the stage's resolved ``config``
(JSON), enough to rebuild the model with :func:`onebit.train.build.build_model`. Lightning's
``.ckpt`` files (for resuming) are read with ``torch.load(weights_only=True)``, passed explicitly
(so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn on pickle's code execution).

Every checkpoint and weights file has a SHA-256 beside it (``last.ckpt.sha256``,
``model.safetensors.sha256``, in ``sha256sum`` format), written with it: while a new file is
being renamed over the old one, the digest file lists both digests (:func:`begin_file_digest`),
then only the new one (:func:`write_file_digest`), so a process killed at any instant leaves a
file that matches its digest file. :func:`verify_file_digest` checks it before a file is used
(``--resume``, ``eval``, ``export``); a mismatch or a missing digest is a :class:`ConfigError`
naming the file, unless inside :func:`unverified_checkpoints` (the CLI's ``--ignore-checksum``).
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import hashlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from onebit.train.config import ConfigError

__all__ = [
    "WEIGHTS_FORMAT",
    "WEIGHTS_VERSION",
    "save_weights",
    "load_weights_file",
    "read_metrics",
    "merge_metrics",
    "set_aside_metrics",
    "plot_curves",
    "write_json",
    "state_digest",
    "DIGEST_SUFFIX",
    "begin_file_digest",
    "file_sha256",
    "load_checkpoint",
    "unverified_checkpoints",
    "verify_file_digest",
    "write_file_digest",
]

DIGEST_SUFFIX = ".sha256"
_UNVERIFIED: contextvars.ContextVar[bool] = contextvars.ContextVar("onebit_unverified",
                                                                  default=False)


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest_file(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _write_digests(path: Path, digests: list[str]) -> None:
    side = _digest_file(path)
    tmp = side.with_name(f".{side.name}.tmp")
    with open(tmp, "w") as f:
        f.writelines(f"{d}  {path.name}\n" for d in dict.fromkeys(digests))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, side)


def _read_digests(path: Path) -> list[str]:
    side = _digest_file(path)
    try:
        lines = side.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    return [line.split()[0].lower() for line in lines if line.split()]


def begin_file_digest(path: Path, new_digest: str) -> None:
    """Before ``os.replace(tmp, path)``: let the digest file accept ``new_digest`` as well as the
    digests it accepts now (the current ``path``'s), so either file is valid meanwhile."""
    old = _read_digests(path) if path.is_file() else []
    _write_digests(path, [new_digest, *old])


def write_file_digest(path: Path, digest: str | None = None) -> None:
    """Write ``path``'s digest file (``digest`` or the file's SHA-256) atomically."""
    _write_digests(path, [digest or file_sha256(path)])


@contextlib.contextmanager
def unverified_checkpoints(active: bool = True) -> Iterator[None]:
    """Inside this block, :func:`verify_file_digest` skips the check (a user's explicit override,
    the CLI's ``--ignore-checksum``)."""
    token = _UNVERIFIED.set(bool(active) or _UNVERIFIED.get())
    try:
        yield
    finally:
        _UNVERIFIED.reset(token)


def verify_file_digest(path: str | os.PathLike) -> None:
    """Raise :class:`ConfigError` naming ``path`` unless its SHA-256 is one its digest file lists."""
    if _UNVERIFIED.get():
        return
    p = Path(path)
    expected = _read_digests(p)
    if not expected:
        raise ConfigError(f"{p}: no checksum file {_digest_file(p).name} beside it, so its "
                          "integrity cannot be checked; use --ignore-checksum to use it anyway")
    actual = file_sha256(p)
    if actual not in expected:
        raise ConfigError(f"{p}: checksum mismatch (SHA-256 {actual[:16]}..., "
                          f"{_digest_file(p).name} says {expected[0][:16]}...): the file is "
                          "corrupted or was changed; restore it, or use --ignore-checksum to use "
                          "it anyway")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A Lightning ``.ckpt`` written by onebit's trainer, verified (:func:`verify_file_digest`)
    and read with ``torch.load(weights_only=True)``; :class:`ConfigError` if unreadable."""
    p = Path(path)
    verify_file_digest(p)
    try:
        ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "Weights only load failed" in str(exc):
            first = ("it holds Python objects besides tensors and plain data; onebit reads "
                     "checkpoints with weights_only=True and never runs code from a file")
        raise ConfigError(f"{p}: not a readable checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{p}: not a checkpoint written by onebit's trainer (no state_dict)")
    return ckpt

WEIGHTS_FORMAT = "onebit.train.weights"
WEIGHTS_VERSION = 1


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)


def save_weights(model: nn.Module, config: dict[str, Any], path: Path) -> None:
    """``model.state_dict()`` + the config as ``path`` (safetensors), written atomically."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, "version": str(WEIGHTS_VERSION),
            "config": json.dumps(config, default=str)}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(state, str(tmp), metadata=meta)
    digest = file_sha256(tmp)
    begin_file_digest(path, digest)
    os.replace(tmp, path)
    write_file_digest(path, digest)


def load_weights_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, config)`` from a ``model.safetensors`` written by :func:`save_weights` or a
    Lightning ``.ckpt`` written by onebit's trainer; a run directory means its final weights."""
    p = Path(path)
    if p.is_dir():
        candidates = [p / "model.safetensors"]
        stages = sorted((p / "stages").glob("*/model.safetensors")) if (p / "stages").is_dir() else []
        candidates += stages[-1:]
        last = p / "checkpoints" / "last.ckpt"
        candidates.append(last)
        for c in candidates:
            if c.is_file():
                p = c
                break
        else:
            raise ConfigError(f"{path}: no model.safetensors or checkpoints/last.ckpt in this run "
                              "directory; has the run trained yet?")
    if not p.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} not found; pass a run directory, its "
                          "model.safetensors or a checkpoints/last.ckpt")
    verify_file_digest(p)
    if p.suffix == ".safetensors":
        try:
            with safe_open(str(p), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise ConfigError(f"{p}: not a readable safetensors file ({exc})") from None
        if meta.get("format") != WEIGHTS_FORMAT or "config" not in meta:
            raise ConfigError(f"{p}: not onebit training weights (no {WEIGHTS_FORMAT!r} metadata); "
                              "use the model.safetensors a run directory holds")
        if int(meta.get("version", "0")) > WEIGHTS_VERSION:
            raise ConfigError(f"{p}: written by a newer onebit (weights format version "
                              f"{meta['version']} > {WEIGHTS_VERSION}); upgrade onebit")
        return state, json.loads(meta["config"])
    ckpt = load_checkpoint(p)
    try:
        config = ckpt["hyper_parameters"]["config"]
        raw = ckpt["state_dict"]
    except (KeyError, TypeError):
        raise ConfigError(f"{p}: not a checkpoint written by onebit's trainer (no config)") from None
    state = {k[len("model."):]: v for k, v in raw.items() if k.startswith("model.")}
    return state, config


def state_digest(model: nn.Module, params_only: bool = False) -> str:
    """SHA-256 of every parameter and buffer (names, shapes and bytes, in name order); with
    ``params_only`` of the parameters alone (what DDP keeps equal across ranks: BatchNorm's running
    statistics are updated per rank)."""
    import hashlib

    h = hashlib.sha256()
    items = model.named_parameters() if params_only else model.state_dict().items()
    for name, t in sorted(items):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def set_aside_metrics(stage_dir: Path) -> None:
    """Before a resumed run: move ``metrics.csv`` to ``metrics.part<k>.csv`` (Lightning's CSV
    logger deletes an existing metrics file when it starts); :func:`merge_metrics` joins them."""
    current = stage_dir / "metrics.csv"
    if current.is_file():
        k = len(list(stage_dir.glob("metrics.part*.csv")))
        os.replace(current, stage_dir / f"metrics.part{k}.csv")


def _metric_files(stage_dir: Path) -> list[Path]:
    parts = sorted(stage_dir.glob("metrics.part*.csv"),
                   key=lambda p: int(p.stem.removeprefix("metrics.part") or 0))
    current = stage_dir / "metrics.csv"
    return parts + ([current] if current.is_file() else [])


def merge_metrics(stage_dir: Path) -> None:
    """Join ``metrics.part*.csv`` and ``metrics.csv`` into ``metrics.csv``: one row per
    (step, epoch) with the latest value of each metric (steps replayed after a resume override
    the lost ones)."""
    files = _metric_files(stage_dir)
    current = stage_dir / "metrics.csv"
    if not files or files == [current]:
        return
    rows: dict[tuple[str, str], dict[str, str]] = {}
    fields: list[str] = []
    for path in files:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            for name in reader.fieldnames or []:
                if name not in fields:
                    fields.append(name)
            for row in reader:
                key = (row.get("epoch") or "", row.get("step") or "")
                merged = rows.setdefault(key, {})
                merged.update({k: v for k, v in row.items() if v not in (None, "")})
    ordered = sorted(rows.items(), key=lambda kv: (float(kv[0][1] or 0), float(kv[0][0] or 0)))
    tmp = stage_dir / ".metrics.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(r for _, r in ordered)
    os.replace(tmp, current)
    for path in files:
        if path != current:
            path.unlink()


def read_metrics(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Lightning's ``metrics.csv`` as ``{metric: [(step, value), ...]}``, one value per step
    (a step logged twice, as after a resume, keeps its last value)."""
    series: dict[str, dict[int, float]] = {}
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row.get("step") or 0))
            except ValueError:
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                try:
                    v = float(value)
                except ValueError:
                    continue
                if math.isfinite(v):
                    series.setdefault(key, {})[step] = v
    return {k: sorted(v.items()) for k, v in series.items()}


#: the curves' panels: title, y-axis label, factor applied to the values, {metric: legend text}
_CURVE_PANELS = [
    ("loss", "cross-entropy loss", 1.0,
     {"train_loss_step": "train (per step)", "train_loss_epoch": "train (epoch mean)",
      "val_loss": "validation"}),
    ("accuracy", "accuracy (%)", 100.0,
     {"train_acc": "train (epoch mean)", "train_acc_epoch": "train (epoch mean)",
      "val_acc": "validation"}),
    ("binary weights whose sign flipped in the epoch", "weights flipped (%)", 100.0,
     {"flip_ratio": "all binary layers"}),
    ("learning rate", "learning rate", 1.0, {"lr": "first parameter group"}),
]


def _stage_series(parts: list[tuple[str, Path]]) -> tuple[dict[str, list[tuple[float, float]]],
                                                          list[tuple[str, int, int]]]:
    """The metrics of consecutive stages on one step axis: each stage's steps are shifted to start
    after the previous stage's last step, with a NaN point between stages (a line break). Returns
    ``{metric: [(step, value), ...]}`` and ``[(stage, first step, last step), ...]`` for the
    stages that logged anything."""
    series: dict[str, list[tuple[float, float]]] = {}
    spans: list[tuple[str, int, int]] = []
    offset = 0
    for name, path in parts:
        stage = read_metrics(Path(path))
        steps = [step for values in stage.values() for step, _ in values]
        if not steps:
            continue
        for key, values in stage.items():
            if key in series:
                series[key].append((offset - 0.5, math.nan))
            series.setdefault(key, []).extend((step + offset, v) for step, v in values)
        spans.append((name, offset, offset + max(steps)))
        offset += max(steps) + 1
    return series, spans


def plot_curves(metrics_csv: Path | list[tuple[str, Path]], out_png: Path, title: str = "") -> bool:
    """Loss, accuracy (%), flipped binary weights (%) and learning-rate curves against the
    optimizer step; False if nothing to plot.

    ``metrics_csv`` is one stage's ``metrics.csv``, or ``[(stage name, metrics.csv), ...]`` for a
    multi-stage run: its stages then share one step axis, with dashed lines at the stage
    boundaries and the stage names along the top."""
    parts = [("", Path(metrics_csv))] if isinstance(metrics_csv, (str, os.PathLike)) \
        else [(name, Path(p)) for name, p in metrics_csv]
    series, spans = _stage_series(parts)
    if not series:
        return False
    # heavy: matplotlib loads only when curves are plotted
    import matplotlib

    matplotlib.use("Agg", force=True)
    # after use("Agg"): pyplot picks its backend when imported
    import matplotlib.pyplot as plt

    panels = [(t, ylabel, k, {m: label for m, label in keys.items() if m in series})
              for t, ylabel, k, keys in _CURVE_PANELS]
    panels = [p for p in panels if p[3]]
    staged = len(spans) > 1
    first_step, last_step = spans[0][1], spans[-1][2]
    margin = 0.02 * (last_step - first_step) + 0.5
    ncols = min(2, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, (4.0 if staged else 3.6) * nrows),
                             squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (name, ylabel, factor, keys) in zip(axes.flat, panels):
        for key, label in keys.items():
            xs, ys = zip(*series[key])
            dense = key.endswith("_step") or key == "lr"
            ax.plot(xs, [factor * y for y in ys], "-" if dense else "o-", label=label,
                    linewidth=1.0 if dense else 1.6, markersize=3, alpha=0.6 if dense else 1.0)
        ax.set_xlim(first_step - margin, last_step + margin)   # the same steps in every panel
        ax.set_xlabel("optimizer step" + (" (stages one after another)" if staged else ""))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        if staged:
            for _, first, _ in spans[1:]:
                ax.axvline(first - 0.5, color="0.3", linestyle="--", linewidth=1.0)
            top = ax.secondary_xaxis("top")
            top.set_xticks([(a + b) / 2 for _, a, b in spans], [s for s, _, _ in spans],
                           fontsize=8)
            top.tick_params(length=0)
            ax.set_title(name, pad=16)
        else:
            ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out_png)
    return True
