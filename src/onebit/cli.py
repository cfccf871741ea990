"""The ``onebit`` command line (also ``python -m onebit``).

Commands::

    onebit train --config <recipe name or file.yaml> [key.sub=value ...] [--resume [RUN_DIR]]
    onebit eval CHECKPOINT [--data-dir DIR] [--accelerator gpu]
    onebit summary MODEL [--method M] [--input-size C H W]
    onebit list {models,methods,datasets,recipes}
    onebit export CHECKPOINT OUT.onebit
    onebit predict MODEL.onebit --images X.idx|X.npy [--labels Y.idx|Y.npy]
    onebit bench MODEL.onebit [--batch-sizes 1 8] [--threads 1 2]
    onebit inspect MODEL.onebit
    onebit --version

Any config field can be overridden as ``key.sub=value`` (the value is parsed as YAML). Every error
prints one line on stderr (``onebit: error: ...``, naming the fix where the user can act; only the
missing-data message keeps its own line breaks, one place per line) and exits with status 2; no
traceback unless ``--debug`` (or ``ONEBIT_DEBUG=1``) is given. ``predict``, ``bench``,
``inspect``, ``list`` and every error path import neither torch nor yaml: they work in the
runtime-only install (``pip install onebit``, NumPy only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from onebit import __version__
from onebit.errors import OnebitError, UserError
from onebit.recipes import list_recipes

__all__ = ["main", "build_parser", "UserError"]

PROG = "onebit"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        raise UserError(f"{message} (see `{self.prog} --help`)")




def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Train 1-bit and multiplication-free networks; inspect them.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error (also ONEBIT_DEBUG=1)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", help="train a recipe (YAML config), with key.sub=value overrides")
    t.add_argument("--config", "-c", help="a recipe name (`onebit list recipes`) or a recipe YAML file")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="override any config field, e.g. optim.lr=0.01 trainer.max_epochs=2")
    t.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint (the run of --config, "
                        "or RUN_DIR)")
    t.add_argument("--overwrite", action="store_true", help="delete an existing run directory first")
    t.add_argument("--data-dir", help="dataset directory (= data.data_dir=DIR)")
    t.add_argument("--accelerator", choices=("cpu", "gpu", "cuda", "mps", "auto"),
                   help="= trainer.accelerator")
    t.add_argument("--devices", help="= trainer.devices (a number or 'auto')")
    t.add_argument("--strategy", help="= trainer.strategy (auto, ddp, ddp_spawn, ...)")
    t.add_argument("--output", help="parent directory of the run (= output.dir)")
    t.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit without training")
    t.add_argument("--ignore-checksum", action="store_true",
                   help="resume even if the checkpoint does not match its .sha256 file")

    e = sub.add_parser("eval", help="score a trained model on the test split")
    e.add_argument("checkpoint", help="a run directory, its model.safetensors or a .ckpt")
    e.add_argument("--data-dir", help="dataset directory")
    e.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu", "cuda", "mps", "auto"))
    e.add_argument("--batch-size", type=int, help="evaluation batch size")
    e.add_argument("--limit", type=int, help="score only the first N test images")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--ignore-checksum", action="store_true",
                   help="score even if the checkpoint does not match its .sha256 file")

    s = sub.add_parser("summary", help="per-layer bits, params, memory and MACs of a model")
    s.add_argument("model", help="a model name (see `onebit list models`)")
    s.add_argument("--method", default="float", help="binarize with this method first")
    s.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"),
                   help="input size (default: the model's default_input_size)")
    s.add_argument("--num-classes", type=int, default=10)
    s.add_argument("--json", action="store_true", help="print rows and totals as JSON")

    ls = sub.add_parser("list", help="list models, methods, datasets or recipes")
    ls.add_argument("what", choices=("models", "methods", "datasets", "recipes"))

    from onebit.deploy.cli import add_subcommands  # export, predict, bench

    add_subcommands(sub)
    return p


def _cmd_train(args: argparse.Namespace) -> int:
    # yaml only here: predict/bench/inspect/list run without it
    from onebit.train.config import ConfigError, apply_overrides, load_config, validate

    overrides = list(args.overrides)
    for flag, key in (("data_dir", "data.data_dir"), ("accelerator", "trainer.accelerator"),
                      ("strategy", "trainer.strategy"), ("output", "output.dir")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    if args.devices is not None:
        overrides.append(f"trainer.devices={args.devices}")
    resume = args.resume
    if isinstance(resume, str) and "=" in resume and not Path(resume).is_dir():
        overrides.append(resume)  # `--resume key=value`: an override after a bare --resume
        resume = True
    if args.config is None:
        if not isinstance(resume, str):
            raise ConfigError("give a recipe with --config configs/<recipe>.yaml (or --resume RUN_DIR "
                              "to continue a run); `onebit list recipes` shows the recipes")
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{resume} is not a run directory (no config.yaml); pass the "
                              "directory a run wrote, e.g. runs/<name>")
        cfg = load_config(saved)
        cfg["output"]["dir"] = str(Path(resume).resolve().parent)
        cfg["name"] = Path(resume).resolve().name
    else:
        cfg = load_config(args.config)
        if isinstance(resume, str):
            raise ConfigError("--resume RUN_DIR takes no --config (the run's own config.yaml is used); "
                              "use --config X --resume to resume X's run")
    cfg = apply_overrides(cfg, overrides) if overrides else validate(cfg)
    _check_run_name(cfg["name"])
    # torch only here: the runtime commands run without it
    from onebit.train.build import check_buildable
    from onebit.train.config import resolve_stages

    for stage in resolve_stages(cfg):
        check_buildable(stage)
    if args.print_config:
        # yaml only here: the runtime commands run without it
        from onebit.train.config import dump_yaml

        print(dump_yaml(cfg), end="")
        return 0
    # torch and lightning only when training: the runtime commands run without them
    from onebit.train.runner import train

    from onebit.train.artifacts import unverified_checkpoints

    with unverified_checkpoints(args.ignore_checksum):
        results = train(cfg, resume=bool(resume), overwrite=args.overwrite)
    if results is not None:
        # torch and lightning only when training: the runtime commands run without them
        from onebit.train.runner import run_dir_of

        acc = results["test_acc"]
        print(f"{cfg['name']}: test accuracy {100 * acc:.2f}% ({results['method']}, "
              f"{results['model']}, {results['dataset']}); {results['steps']} steps in "
              f"{results['wall_time_s']:.1f} s; run directory {run_dir_of(cfg)}")
    return 0


def _check_run_name(name: Any) -> None:
    """A run name is one directory name: no separator, no ``..``, nothing hidden."""
    # yaml only here: the runtime commands run without it
    from onebit.train.config import ConfigError

    text = str(name)
    if not text or "/" in text or "\\" in text or text.startswith(".") or "\0" in text:
        raise ConfigError(f"run name {text!r} must be a plain directory name (no '/', no leading "
                          "'.'); set name=<run> and output.dir=<parent directory>")


def _cmd_eval(args: argparse.Namespace) -> int:
    if Path(args.checkpoint).suffix == ".onebit":
        raise UserError(f"{args.checkpoint} is an exported .onebit model, not a training checkpoint; "
                        f"score it with `{PROG} predict {args.checkpoint} --images X --labels Y`")
    # torch and lightning only here: the runtime commands run without them
    from onebit.train.artifacts import unverified_checkpoints
    from onebit.train.runner import evaluate_checkpoint

    with unverified_checkpoints(args.ignore_checksum):
        res = evaluate_checkpoint(args.checkpoint, data_dir=args.data_dir,
                                  accelerator=args.accelerator, batch_size=args.batch_size,
                                  test_subset=args.limit)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['checkpoint']}: test accuracy {100 * res['test_acc']:.2f}% "
              f"(loss {res['test_loss']:.4f}, {res['test_samples']} images of {res['dataset']}; "
              f"{res['method']} {res['model']})")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    # torch and yaml only here: the runtime commands run without them
    from onebit.train.build import _hint
    from onebit.train.config import ConfigError

    from onebit import binarize_
    from onebit.analysis.summary import summarize
    from onebit.methods import list_methods
    from onebit.models import create, list_models, model_info

    if args.model not in list_models():
        raise ConfigError(f"unknown model {args.model!r}{_hint(args.model, list_models())}; known "
                          f"models: {', '.join(list_models())}")
    if args.method not in list_methods():
        raise ConfigError(f"unknown method {args.method!r}{_hint(args.method, list_methods())}; "
                          f"known methods: {', '.join(list_methods())}")
    size = tuple(args.input_size) if args.input_size else model_info(args.model).default_input_size
    if min(size) < 1:
        raise ConfigError(f"--input-size must be positive, got {' '.join(map(str, size))}")
    model = create(args.model, num_classes=args.num_classes, in_channels=size[0])
    binarize_(model, args.method)
    try:
        s = summarize(model, size)
    except RuntimeError as exc:
        raise ConfigError(f"{args.model} cannot run on input size {size}: "
                          f"{str(exc).splitlines()[0]}; pass a fitting --input-size C H W") from None
    print(json.dumps(s.to_dict(), indent=2) if args.json else s.render())
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what == "models":
        # torch only here: `onebit list` of the other kinds runs without it
        from onebit.models import list_models

        names = list_models()
    elif args.what == "methods":
        # torch only here: `onebit list` of the other kinds runs without it
        from onebit.methods import list_methods

        names = list_methods()
    elif args.what == "datasets":
        # startup: onebit.data (urllib, tarfile) loads only for `list datasets`
        from onebit.data import list_datasets

        names = list_datasets() + ["synthetic"]
    else:
        names = list_recipes()
    print("\n".join(names))
    return 0


# (module, class names): the user errors of modules that a command may have imported. Only modules
# already imported are looked at, so reporting an error never imports torch or yaml.
_USER_ERRORS = (
    ("onebit.train.config", ("ConfigError",)),
    ("onebit.data.sources", ("DatasetNotFoundError", "ChecksumError", "DownloadError")),
    ("onebit.data.idx", ("IDXFormatError",)),
    ("onebit.runtime.errors", ("FormatError",)),
    ("onebit.deploy.trace", ("ConversionError",)),
)
#: what a runtime-only install (NumPy only) lacks: a command needing one says how to get it
_TRAINING_EXTRAS = ("torch", "yaml", "lightning", "safetensors", "matplotlib", "torchvision")


def _user_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [OnebitError, OSError, ModuleNotFoundError]
    for module_name, names in _USER_ERRORS:
        module = sys.modules.get(module_name)
        types += [getattr(module, n) for n in names if hasattr(module, n)]
    return tuple(types)


def _message(exc: BaseException) -> str:
    """The error as one line; only a missing dataset keeps its line breaks (one place a line)."""
    if isinstance(exc, ModuleNotFoundError) and exc.name in _TRAINING_EXTRAS:
        return (f"this command needs {exc.name}, which the runtime-only install lacks; install the "
                "training extras (pip install 'onebit[train]'); predict, bench and inspect work "
                "without them")
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"  # e.g. a directory to write into that is missing
    text = str(exc).strip()
    keep_lines = type(exc).__name__ == "DatasetNotFoundError"
    if not keep_lines:
        text = " ".join(text.split())
    return text or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``onebit`` console script; returns the exit status.

    Every error ends here: one line on stderr and status 2 (an unexpected one names its type and
    points to ``--debug``, which re-raises it with its traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("ONEBIT_DEBUG", "") not in ("", "0") or "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # accepted before or after the command
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if args.command == "train":
            # overrides may come before or after the options
            bad = [a for a in extra if a.startswith("-") or "=" not in a]
            if bad:
                raise UserError(f"unrecognized arguments: {' '.join(bad)}; overrides are written "
                                "key.sub=value (see `onebit train --help`)")
            args.overrides = list(args.overrides) + extra
        elif extra:
            raise UserError(f"unrecognized arguments: {' '.join(extra)} (see `{PROG} {args.command} "
                            "--help`)")
        if args.command is None:
            parser.print_help()
            return 2
        handler = {"train": _cmd_train, "eval": _cmd_eval, "summary": _cmd_summary,
                   "list": _cmd_list}.get(args.command) or args.handler
        return handler(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, _user_error_types()):
            print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        else:
            print(f"{PROG}: error: {type(exc).__name__}: {_message(exc)} (an unexpected error; "
                  f"rerun with --debug for the traceback and report it)", file=sys.stderr)
        return 2
