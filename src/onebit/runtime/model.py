"""The executor: a validated :class:`~onebit.runtime.graph.Graph` compiled into NumPy/kernel calls.

``Model`` prepares every op once (weight matrices for im2col, binary filters for the kernels) and
keeps only read-only state besides per-thread buffers, so ``model(x)`` may run from several
threads at once: each call keeps its activations in its own local dict, frees each value after
its last use, and lets elementwise ops (add, relu, clip, BatchNorm: the ``inplace`` forms of
:data:`onebit.runtime.ops.OPS`) overwrite an activation of its own at that last use. The outputs
of the steps whose kernels write into given arrays (binary and int8 convs, pools) live in buffers
planned at load: values whose lifetimes do not overlap share one, and each thread gets its own
set per batch size on its first call, so later calls allocate none of them. Each op compiles as its registry entry says;
the graph is validated once (by ``Model(graph)``, or by :func:`load` as it reads the file). The
nodes run as the steps of :func:`onebit.runtime.plan.plan`, which fuses a binary conv with the
residual add after it and packs signs where they are made (identical results; ``fuse=False`` turns
it off).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from onebit.runtime import binary_ops
from onebit.runtime.container import read_container, write_container
from onebit.runtime.graph import Graph, graph_and_infos_from_document, graph_to_document
from onebit.runtime.node import ValueInfo
from onebit.runtime.ops import OPS, Kernel
from onebit.runtime.plan import Step, plan

__all__ = ["Model", "load", "load_graph", "save_graph"]


def _compile_step(graph: Graph, step: Step, reuse: int | None) -> Kernel:
    """The kernel of one step: the node's compiled op from the registry (its in-place form where
    input ``reuse`` is a temporary at its last use; its fused form with an absorbed reader or
    the NCHW input), or the fused binary conv + residual add."""
    node = step.nodes[0]
    tensors = {role: graph.tensors[key] for role, key in node.tensors.items()}
    if step.fused:  # (bconv2d, add): xs = [conv input, residual]
        return binary_ops.BConvKernel(binary_ops.BinaryArgs.from_node(node.attrs, tensors),
                                      residual=True, sign_bits=step.sign_bits)
    spec = OPS[node.op]
    if step.absorbed is not None or step.nchw:
        return spec.fuse(node, tensors, step.absorbed, step.nchw)
    if _runs_inplace(step, reuse):
        return spec.inplace(node, tensors, reuse)
    return spec.compile(node, tensors, step.sign_bits)


def _runs_inplace(step: Step, reuse: int | None) -> bool:
    """Whether the step compiles to its op's in-place form, writing into input ``reuse``."""
    return (reuse is not None and not step.fused and step.absorbed is None and not step.nchw
            and OPS[step.nodes[0].op].inplace is not None)


def _check_threads(num_threads: Any) -> None:
    if num_threads is not None and (type(num_threads) is not int or num_threads < 1):
        raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")


class Model:
    """A runnable onebit model. ``model(x)`` maps a float32 NCHW batch to float32 logits.

    Build one with :func:`load` (from a ``.onebit`` file) or ``Model(graph)``. ``num_threads``
    is passed to onebit's kernels (None: their default, see
    :func:`onebit.kernels.set_default_num_threads`); NumPy's own BLAS threads are not changed.
    ``fuse`` applies the fusions of :mod:`onebit.runtime.plan` (``steps`` lists what runs).
    ``tune`` times, once per binary conv, every popcount kernel this CPU can run for its filters
    on the layer's input size and keeps the fastest (results are identical whichever runs;
    :meth:`kernel_choices` lists what was chosen); ``tune=False`` keeps the rule's choice by
    filter length and loads faster.
    """

    def __init__(self, graph: Graph, num_threads: int | None = None, fuse: bool = True,
                 tune: bool = True) -> None:
        _check_threads(num_threads)
        self._build(graph, graph.validate(), num_threads, fuse, tune)

    @classmethod
    def _validated(cls, graph: Graph, infos: dict[str, ValueInfo], num_threads: int | None,
                   fuse: bool, tune: bool = True) -> Model:
        """A model of a graph already validated (``infos`` from its validation)."""
        _check_threads(num_threads)
        model = cls.__new__(cls)
        model._build(graph, infos, num_threads, fuse, tune)
        return model

    def _build(self, graph: Graph, infos: dict[str, ValueInfo], num_threads: int | None,
               fuse: bool, tune: bool) -> None:
        if not isinstance(tune, bool):
            raise TypeError(f"tune must be True or False, got {tune!r}")
        self.infos = infos
        self.graph = graph
        self.num_threads = num_threads
        self.steps = plan(graph, self.infos, fuse=fuse)
        self._nchw_input = any(s.nchw for s in self.steps)
        last_use: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            for name in step.inputs:
                last_use[name] = i
        # values each call allocates afresh (not the caller's input, not an op's possible view of
        # its input) and that nothing reads later (not the graph's output)
        owned = {name for s in self.steps if not OPS[s.nodes[-1].op].view
                 for name in s.outputs} - {graph.output}
        reuse = [next((j for j, name in enumerate(s.inputs)
                       if name in owned and last_use[name] == i), None)
                 for i, s in enumerate(self.steps)]
        self._steps = [(_compile_step(graph, s, r), list(s.inputs), list(s.outputs))
                       for s, r in zip(self.steps, reuse)]
        # the binary convs by node, each tuned for its input's (H, W) unless tune=False
        self._binary = [(s.nodes[0], fn) for s, (fn, _, _) in zip(self.steps, self._steps)
                        if isinstance(fn, binary_ops.BConvKernel)]
        if tune:
            for node, fn in self._binary:
                fn.tune(tuple(self.infos[node.inputs[0]].shape[1:]), num_threads)
        # free each value after its last reader; one nothing reads (e.g. packed signs whose
        # readers all went another way) right after it is made
        self._free = [list(dict.fromkeys(  # a step may read one value twice
            [name for name in s.inputs if last_use[name] == i and name != graph.output]
            + [name for name in s.outputs if name not in last_use and name != graph.output]))
            for i, s in enumerate(self.steps)]
        self._plan_buffers(graph, last_use, reuse)
        self._arenas = threading.local()

    def _plan_buffers(self, graph: Graph, last_use: dict[str, int],
                      reuse: list[int | None]) -> None:
        """Plan the outputs of the steps whose kernels write into given arrays (``takes_out``)
        into a few reusable buffers ("slots"): values whose lifetimes do not overlap share a
        slot of their size, so each call allocates nothing for them and the buffers stay warm
        in cache. A value lives from its step to its last reader, extended over the values that
        alias it (a view of it, or an in-place op's output written into it)."""
        root: dict[str, str] = {}  # value -> the value whose memory it is
        for i, s in enumerate(self.steps):
            for name in s.outputs:
                root[name] = name
            if OPS[s.nodes[-1].op].view or _runs_inplace(s, reuse[i]):
                src = s.inputs[0 if reuse[i] is None else reuse[i]]
                root[s.outputs[0]] = root.get(src, src)
        end: dict[str, int] = {}  # root -> the last step any alias of it is read
        for name, r in root.items():
            end[r] = max(end.get(r, -1), last_use.get(name, -1))
        out_root = root.get(graph.output)
        slots: list[int] = []  # bytes per sample of each slot
        busy_until: list[int] = []  # the step after which each slot is free again
        self._slot_of: list[tuple[tuple[int, int, tuple[int, ...], type], ...] | None] = []
        for i, s in enumerate(self.steps):
            fn = self._steps[i][0]
            if not getattr(fn, "takes_out", False) or graph.output in s.outputs:
                self._slot_of.append(None)
                continue
            planned = []
            for j, name in enumerate(s.outputs):  # outputs[1]: the signs of outputs[0]
                shape, dtype = self._nhwc_shape(self.infos[s.outputs[0]], j > 0)
                nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
                last = max(end.get(name, i), i)
                # of the free slots of this size, the one freed last (still warm in cache)
                free = [(u, k) for k, (b, u) in enumerate(zip(slots, busy_until))
                        if b == nbytes and u < i]
                k = max(free)[1] if free else None
                if k is None:
                    k = len(slots)
                    slots.append(nbytes)
                    busy_until.append(last)
                busy_until[k] = last
                planned.append((k, nbytes, shape, dtype))
            self._slot_of.append(tuple(planned))
        self._slot_bytes = slots
        # the caller owns what model(x) returns: copy an output that lives in a slot
        self._copy_output = out_root is not None and out_root != graph.output and any(
            out_root in s.outputs for s, p in zip(self.steps, self._slot_of) if p)

    @staticmethod
    def _nhwc_shape(info: ValueInfo, bits: bool) -> tuple[tuple[int, ...], type]:
        """Per-sample array shape and dtype of a value as the kernels store it (NHWC), or of
        its packed signs (``bits``)."""
        if bits or info.kind == "bits":
            c = info.shape[0]
            words = (c + 31) // 32
            return ((*info.shape[1:], words) if len(info.shape) == 3 else (words,)), np.uint32
        shape = info.shape
        return ((*shape[1:], shape[0]) if len(shape) == 3 else shape), np.float32

    def _buffers(self, n: int) -> list[tuple[np.ndarray, ...] | None]:
        """This thread's planned output arrays for batch size ``n`` (made on first use)."""
        cache = getattr(self._arenas, "by_batch", None)
        if cache is None:
            cache = self._arenas.by_batch = {}
        outs = cache.get(n)
        if outs is None:
            if len(cache) >= 4:  # a few batch sizes per thread
                cache.pop(next(iter(cache)))
            store = [np.empty(n * b, dtype=np.uint8) for b in self._slot_bytes]
            outs = [None if p is None else tuple(
                store[k][:n * nbytes].view(dtype).reshape(n, *shape)
                for k, nbytes, shape, dtype in p) for p in self._slot_of]
            cache[n] = outs
        return outs

    def kernel_choices(self) -> list[dict[str, Any]]:
        """The popcount kernel of each binary conv: ``node``, ``kernel``, ``choice`` (``"rule"``
        by filter length, ``"measured"`` at load, ``"forced"``) and the candidates' times in ms
        where they were measured."""
        return [{"node": node.name, "kernel": fn.args.weight_bits.kernel,
                 "choice": fn.args.weight_bits.choice,
                 "times_ms": {k: 1e3 * v for k, v in fn.tuning.items()}}
                for node, fn in self._binary]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.input_shape

    @property
    def class_names(self) -> list[str] | None:
        return self.graph.class_names

    def _check_input(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind != "f":
            raise TypeError(f"input must be a float array (float32), got dtype {x.dtype}; for "
                            "uint8 images use model(model.preprocess(images))")
        shape = tuple(self.graph.input_shape)
        if x.shape == shape:
            raise ValueError(f"input has shape {x.shape}: add the batch axis, e.g. x[None] "
                             f"(expected (N, {', '.join(map(str, shape))}))")
        if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"input must have shape (N, {', '.join(map(str, shape))}), got "
                             f"{x.shape}")
        x = x.astype(np.float32, copy=False)
        if x.ndim != 4:
            return x
        if self._nchw_input:  # the first step reads NCHW (see onebit.runtime.plan)
            return np.ascontiguousarray(x)
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Logits (float32, ``[N, classes]``) for a float NCHW batch ``x`` (already normalised)."""
        x = self._check_input(x)
        if x.shape[0] == 0:  # an empty batch: empty logits (or feature maps, NCHW)
            return np.zeros((0, *self.infos[self.graph.output].shape), dtype=np.float32)
        values = {self.graph.input: x}
        planned = self._buffers(x.shape[0])
        for (fn, inputs, outputs), free, into in zip(self._steps, self._free, planned):
            if into is None:
                result = fn([values[name] for name in inputs], self.num_threads)
            else:
                result = fn([values[name] for name in inputs], self.num_threads, into)
            if len(outputs) == 1:
                values[outputs[0]] = result
            else:
                values.update(zip(outputs, result))
            for name in free:
                del values[name]
        out = values[self.graph.output]
        if out.ndim == 4:  # a feature-map output goes back to NCHW
            return np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        return out.copy() if self._copy_output else out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class indices (``int64 [N]``): the argmax of the logits."""
        return np.argmax(self(x), axis=1)

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Raw uint8 images (``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]``) -> the float32
        NCHW input: scaled to [0, 1], then normalised with the file's mean/std if it has them."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"preprocess expects uint8 images, got {images.dtype}")
        shape = tuple(self.graph.input_shape)
        if len(shape) != 3:
            raise ValueError("preprocess needs an image model (input shape (C, H, W))")
        c = shape[0]
        if images.ndim == 3 and c == 1:
            images = images[:, None]
        elif images.ndim == 4 and images.shape[1:] != shape and images.shape[-1] == c:
            images = images.transpose(0, 3, 1, 2)
        if images.ndim != 4 or images.shape[1:] != shape:
            raise ValueError(f"images of shape {images.shape} do not fit the model's input "
                             f"{shape}")
        x = images.astype(np.float32) / np.float32(255)
        norm = self.graph.normalization
        if norm:
            mean = np.asarray(norm["mean"], np.float32).reshape(-1, 1, 1)
            std = np.asarray(norm["std"], np.float32).reshape(-1, 1, 1)
            x = (x - mean) / std
        return x


def save_graph(graph: Graph, path: str | os.PathLike[str]) -> int:
    """Validate ``graph`` and write it as a ``.onebit`` file; return the file size in bytes."""
    return write_container(path, graph_to_document(graph), graph.tensors)


def load_graph(path: str | os.PathLike[str] | bytes) -> Graph:
    """Read, check and return the graph of a ``.onebit`` file (or its bytes).

    Raises :class:`~onebit.runtime.FormatError` for anything malformed; nothing in the file runs.
    """
    document, tensors = read_container(path)
    return graph_and_infos_from_document(document, tensors)[0]


def load(path: str | os.PathLike[str] | bytes, num_threads: int | None = None,
         fuse: bool = True, tune: bool = True) -> Model:
    """Load a ``.onebit`` file into a runnable :class:`Model` (torch-free). ``fuse=False`` runs
    node by node, without the fusions of :mod:`onebit.runtime.plan` (the results are the same).
    The graph is validated once, as it is read."""
    graph, infos = graph_and_infos_from_document(*read_container(path))
    return Model._validated(graph, infos, num_threads, fuse, tune)
