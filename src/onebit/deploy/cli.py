"""The deployment subcommands of the ``onebit`` command line::

    onebit export CHECKPOINT OUT.onebit [--format onebit|onnx|qonnx]
    onebit predict MODEL.onebit --images X.idx|X.npy [--labels Y.idx|Y.npy] [--threads N] [--json]
                   [--compare RUN_DIR]
    onebit bench MODEL.onebit [--batch-sizes 1 8] [--threads 1 2] [--repeats 20] [--json]
    onebit inspect MODEL.onebit [--json]

``export`` rebuilds a trained model from a run directory, its ``model.safetensors`` or a ``.ckpt``
and converts it with the dataset's class names and normalisation. ``predict`` runs the torch-free
runtime (uint8 images are scaled and normalised as the file says; float arrays are taken as the
model's input) and reports accuracy when labels are given; ``--compare RUN_DIR`` also runs the
PyTorch model of that run (eval mode) on the same inputs and reports how many predictions are
identical and the largest logit difference. ``bench`` times the runtime beside the same graph in
PyTorch float32 (when PyTorch is installed) and prints the file size beside the float32 weights.
``inspect`` prints the graph: every op with its output shape and tensor bytes, the method, input,
class names and sizes. ``predict``, ``bench`` and ``inspect`` need neither torch nor yaml.

:func:`add_subcommands` registers them on the main parser of :mod:`onebit.cli`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from onebit.errors import UserError

__all__ = ["add_subcommands"]


def _user_error(message: str) -> Exception:
    return UserError(message)


def _export(args: argparse.Namespace) -> int:
    out_dir = Path(args.out).resolve().parent
    if not out_dir.is_dir():
        raise _user_error(f"cannot write {args.out}: the directory {out_dir} does not exist "
                          "(create it first)")
    if Path(args.checkpoint).suffix == ".onebit":
        raise _user_error(f"{args.checkpoint} is already an exported .onebit model; export takes "
                          "a run directory, its model.safetensors or a .ckpt")
    # torch, yaml and the converter only here: predict/bench/inspect run without them
    from onebit.data import DATASETS
    from onebit.deploy import ConversionError, convert, save
    from onebit.train.artifacts import load_weights_file, unverified_checkpoints
    from onebit.train.build import build_model, dataset_meta, load_weights_

    with unverified_checkpoints(args.ignore_checksum):
        state, config = load_weights_file(args.checkpoint)
    model, _ = build_model(config)
    missing = load_weights_(model, state, str(args.checkpoint))
    if missing:
        raise _user_error(f"{args.checkpoint} lacks {', '.join(missing[:5])}: it does not match "
                          "its own config")
    meta = dataset_meta(config)
    info = DATASETS.get(meta.name.strip().lower().replace("-", "_"))
    names = list(info.class_names) if info is not None else None
    try:
        graph = convert(model, example_input_shape=tuple(meta.input_size), class_names=names,
                        normalization={"mean": list(meta.mean), "std": list(meta.std)})
    except ConversionError as exc:
        raise _user_error(f"cannot export {args.checkpoint}: {exc}") from None
    if args.format != "onebit":
        return _export_onnx(graph, args)
    size = save(graph, args.out)
    binary = sum(n.op in ("bconv2d", "blinear") for n in graph.nodes)
    print(f"{args.out}: {len(graph.nodes)} ops ({binary} binary), {size} bytes; method "
          f"{graph.method}, input {'x'.join(map(str, graph.input_shape))}, "
          f"{f'{len(names)} class names' if names else 'no class names'}")
    return 0


def _export_onnx(graph: Any, args: argparse.Namespace) -> int:
    """``--format onnx`` (the float simulation) or ``--format qonnx`` (BipolarQuant / Quant)."""
    # startup: the ONNX writers load only for --format onnx/qonnx
    from onebit.deploy.onnx_export import ExportError

    try:
        if args.format == "qonnx":
            # optional (interop extra: onnx, qonnx): loaded only for this format
            from onebit.deploy.qonnx import export_qonnx as write
        else:
            # the writer for --format onnx (it imports onnx itself, when called)
            from onebit.deploy.onnx_export import export_onnx as write
        proto = write(graph, args.out)
    except ImportError as exc:
        raise _user_error(f"--format {args.format}: {exc}") from None
    except ExportError as exc:
        raise _user_error(f"cannot export {args.checkpoint} as {args.format}: {exc}") from None
    print(f"{args.out}: {args.format}, {len(proto.graph.node)} nodes; method {graph.method}, "
          f"input batch x {'x'.join(map(str, graph.input_shape))}")
    return 0


def _naming(path: str, exc: BaseException) -> str:
    """The error's message, starting with the file's name unless it names it already."""
    text = str(exc)
    return text if str(path) in text else f"{path}: {text}"


def _read_array(path: str, what: str) -> np.ndarray:
    # startup: onebit.data loads only when an input file is read
    from onebit.data.idx import IDXFormatError, read_idx

    p = Path(path)
    if not p.is_file():
        raise _user_error(f"{what} file {path!r} not found")
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        return read_idx(p)
    except (IDXFormatError, ValueError, OSError) as exc:
        raise _user_error(f"{what} file {path}: {exc} (give an .npy or IDX file)") from None


def _compare(run: str, x: np.ndarray, logits: np.ndarray, batch_size: int) -> dict[str, Any]:
    """PyTorch logits of the run's model on ``x`` beside the runtime's ``logits``."""
    # torch and yaml only for --compare: predict runs without them
    import torch

    from onebit.train.artifacts import load_weights_file
    from onebit.train.build import build_model, load_weights_
    from onebit.train.config import ConfigError

    try:
        state, config = load_weights_file(run)
        model, _ = build_model(config)
    except (ConfigError, ValueError, TypeError) as exc:
        raise _user_error(f"--compare {run}: {exc}") from None
    missing = load_weights_(model, state, str(run))
    if missing:
        raise _user_error(f"--compare {run}: its weights lack {', '.join(missing[:5])}")
    model.eval()
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])))
                              .numpy() for i in range(0, len(x), batch_size)])
    if ref.shape != logits.shape:
        raise _user_error(f"--compare {run}: the PyTorch model gives logits of shape {ref.shape}, "
                          f"the .onebit file {logits.shape}; is it that run's export?")
    diff = float(np.abs(ref.astype(np.float64) - logits).max())
    return {"run": str(run), "identical_predictions": int((ref.argmax(1) == logits.argmax(1)).sum()),
            "images": int(len(x)), "max_logit_difference": diff}


def _read_labels(path: str, num_images: int, limit: int | None, num_classes: int) -> np.ndarray:
    """The labels file checked: an IDX file of labels (magic 0x00000801, unsigned bytes, 1-D) or a
    1-D integer .npy, one label per image, each in ``[0, num_classes)``."""
    p = Path(path)
    if p.is_file() and p.suffix != ".npy":
        with open(p, "rb") as f:
            head = f.read(4)
        if head != b"\x00\x00\x08\x01":
            kind = "an IDX image file" if head[:3] == b"\x00\x00\x08" else "not an IDX label file"
            raise _user_error(f"--labels {path} is {kind} (magic {head.hex() or 'missing'}, "
                              "expected 00000801: 1-D unsigned bytes); give the labels file, e.g. "
                              "t10k-labels-idx1-ubyte")
    labels = _read_array(path, "--labels")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise _user_error(f"--labels {path} holds {labels.dtype} of shape {labels.shape}; labels "
                          "are a 1-D array of integer class indices")
    if len(labels) != num_images:
        raise _user_error(f"--labels has {len(labels)} labels for {num_images} images ({path}); "
                          "give the labels of the same split as --images")
    labels = labels[:limit] if limit is not None else labels
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise _user_error(f"--labels {path} holds labels in [{labels.min()}, {labels.max()}] but "
                          f"the model has {num_classes} classes (0 to {num_classes - 1})")
    return labels.astype(np.int64)


def _num_classes(model: Any) -> int:
    graph = model.graph
    return int(graph.validate()[graph.output].shape[0])


def _inspect(args: argparse.Namespace) -> int:
    # startup: the runtime (native kernels) loads only for a command that reads a model
    import onebit.runtime as rt

    try:
        graph = rt.load_graph(args.model)
    except (rt.FormatError, FileNotFoundError, IsADirectoryError) as exc:
        raise _user_error(_naming(args.model, exc)) from None
    infos = graph.validate()
    ops: dict[str, int] = {}
    for node in graph.nodes:
        ops[node.op] = ops.get(node.op, 0) + 1
    file_bytes = Path(args.model).stat().st_size
    if args.json:
        print(json.dumps({
            "model": args.model, "method": graph.method, "input_shape": list(graph.input_shape),
            "output_shape": list(infos[graph.output].shape), "class_names": graph.class_names,
            "normalization": graph.normalization, "file_bytes": file_bytes,
            "tensor_bytes": graph.tensor_bytes(), "ops": ops,
            "nodes": [{"op": n.op, "name": n.name, "inputs": list(n.inputs), "output": n.output,
                       "kind": infos[n.output].kind, "shape": list(infos[n.output].shape),
                       "attrs": n.attrs,
                       "tensor_bytes": int(sum(graph.tensors[t].nbytes
                                               for t in n.tensors.values()))}
                      for n in graph.nodes]}, indent=2))
        return 0
    names = graph.class_names
    print(f"{args.model}: method {graph.method or '-'}, input {tuple(graph.input_shape)}, output "
          f"{infos[graph.output].shape}, {len(graph.nodes)} ops "
          f"({', '.join(f'{k} x{v}' for k, v in sorted(ops.items()))})")
    print(f"file {file_bytes} bytes, tensors {graph.tensor_bytes()} bytes; class names: "
          f"{', '.join(names) if names else '-'}")
    print(graph.summary())
    return 0


def _predict(args: argparse.Namespace) -> int:
    # startup: the runtime (native kernels) loads only for a command that reads a model
    import onebit.runtime as rt

    try:
        model = rt.load(args.model, num_threads=args.threads)
    except (rt.FormatError, FileNotFoundError, IsADirectoryError) as exc:
        raise _user_error(_naming(args.model, exc)) from None
    images = _read_array(args.images, "--images")
    if images.ndim < 2:
        raise _user_error(f"--images {args.images} holds shape {images.shape}; give a batch of "
                          "images (N, ...)")
    total = len(images)
    if args.limit is not None:
        images = images[:args.limit]
    try:
        x = model.preprocess(images) if images.dtype == np.uint8 else np.asarray(images, np.float32)
    except (TypeError, ValueError) as exc:
        raise _user_error(f"--images: {exc}") from None
    if x.shape[1:] != model.input_shape:
        raise _user_error(f"--images hold shape {images.shape}; the model takes (N, "
                          f"{', '.join(map(str, model.input_shape))}) float or uint8 images")
    if args.compare:
        if not len(x):
            raise _user_error("--compare needs at least one image")
        logits = np.concatenate([model(x[i:i + args.batch_size])
                                 for i in range(0, len(x), args.batch_size)])
        preds = logits.argmax(1)
    else:
        preds = np.concatenate([model.predict(x[i:i + args.batch_size])
                                for i in range(0, len(x), args.batch_size)]) if len(x) else \
            np.zeros(0, np.int64)
    names = model.class_names
    result: dict[str, Any] = {"model": args.model, "images": int(len(x)),
                              "predictions": preds.tolist()}
    if args.labels:
        labels = _read_labels(args.labels, total, args.limit, _num_classes(model))
        result["accuracy"] = float((labels == preds).mean()) if len(preds) else 0.0
    if args.compare:
        result["compare"] = _compare(args.compare, x, logits, args.batch_size)
    if args.json:
        print(json.dumps(result))
        return 0
    if "compare" in result:
        c = result["compare"]
        print(f"{args.model} vs PyTorch {c['run']}: {c['identical_predictions']}/{c['images']} "
              f"identical predictions, largest logit difference {c['max_logit_difference']:.3g}")
    if "accuracy" in result:
        print(f"{args.model}: accuracy {100 * result['accuracy']:.2f}% on {len(preds)} images")
    else:
        for i, p in enumerate(preds):
            print(f"{i}\t{p}\t{names[p] if names else ''}".rstrip())
    return 0


def _bench(args: argparse.Namespace) -> int:
    # startup: the runtime (native kernels) loads only for a command that reads a model
    import onebit.runtime as rt
    from onebit.deploy.bench import bench

    try:
        res = bench(args.model, args.batch_sizes, args.threads, args.repeats)
    except (rt.FormatError, FileNotFoundError, IsADirectoryError) as exc:
        raise _user_error(_naming(args.model, exc)) from None
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.model}: {res['method'] or 'model'}, input {res['input_shape']}")
    if res["float32_weight_bytes"] is None:  # no torch: the runtime alone
        print(f"{'batch':>5} {'threads':>7} {'onebit ms':>10}   (PyTorch not installed: no float32 "
              "comparison)")
        for r in res["rows"]:
            print(f"{r['batch']:>5} {r['threads']:>7} {r['runtime_ms']:>10.2f}")
        print(f"file {res['file_bytes']} bytes")
        return 0
    print(f"{'batch':>5} {'threads':>7} {'onebit ms':>10} {'torch fp32 ms':>14} {'speed-up':>9}")
    for r in res["rows"]:
        print(f"{r['batch']:>5} {r['threads']:>7} {r['runtime_ms']:>10.2f} "
              f"{r['torch_float_ms']:>14.2f} {r['speedup']:>8.2f}x")
    ratio = res["file_bytes"] / max(1, res["float32_weight_bytes"])
    print(f"file {res['file_bytes']} bytes; float32 weights {res['float32_weight_bytes']} bytes "
          f"({ratio:.3f}x)")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_subcommands(subparsers: Any) -> None:
    """Add ``export``, ``predict`` and ``bench`` to ``subparsers`` (from ``add_subparsers``).

    Each sets ``handler`` (a function of the parsed arguments returning the exit status).
    """
    e = subparsers.add_parser("export", help="convert a trained model to a .onebit file")
    e.add_argument("checkpoint", help="a run directory, its model.safetensors or a .ckpt")
    e.add_argument("out", help="the file to write")
    e.add_argument("--format", choices=("onebit", "onnx", "qonnx"), default="onebit",
                   help="onebit: the runtime's file (default); onnx: the float simulation in "
                        "standard ONNX; qonnx: QONNX with BipolarQuant/Quant nodes (FINN)")
    e.add_argument("--ignore-checksum", action="store_true",
                   help="export even if the checkpoint does not match its .sha256 file")
    e.set_defaults(handler=_export)

    p = subparsers.add_parser("predict", help="classify images with a .onebit model (no torch)")
    p.add_argument("model", help="a .onebit file")
    p.add_argument("--images", required=True, help="images as .npy or IDX (uint8 or float)")
    p.add_argument("--labels", help="labels (.npy or IDX): print the accuracy")
    p.add_argument("--threads", type=_positive, default=None, help="kernel threads")
    p.add_argument("--batch-size", type=_positive, default=256)
    p.add_argument("--limit", type=_positive, default=None, help="only the first N images")
    p.add_argument("--json", action="store_true", help="print predictions (and accuracy) as JSON")
    p.add_argument("--compare", metavar="RUN_DIR", default=None,
                   help="also run the PyTorch model of this run (a run directory, its "
                        "model.safetensors or a .ckpt; needs torch) and print the identical "
                        "predictions and the largest logit difference")
    p.set_defaults(handler=_predict)

    b = subparsers.add_parser("bench", help="latency of a .onebit model beside PyTorch float32")
    b.add_argument("model", help="a .onebit file")
    b.add_argument("--batch-sizes", type=_positive, nargs="+", default=[1, 8])
    b.add_argument("--threads", type=_positive, nargs="+", default=[1, 2])
    b.add_argument("--repeats", type=_positive, default=20)
    b.add_argument("--json", action="store_true", help="print the results as JSON")
    b.set_defaults(handler=_bench)

    i = subparsers.add_parser("inspect", help="print the graph of a .onebit model (no torch)")
    i.add_argument("model", help="a .onebit file")
    i.add_argument("--json", action="store_true", help="print the graph as JSON")
    i.set_defaults(handler=_inspect)
