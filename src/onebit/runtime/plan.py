"""The runtime's execution plan: a graph's nodes in order, with fusions that change no result.

1. **Residual add into the binary conv.** A ``bconv2d`` with a float output whose only reader is
   an ``add`` of a same-shaped float value (a Bi-Real Net block: ``y = BN(BinConv(sign(x))) + x``)
   runs as one step: the kernel adds the residual in its output transform, at the position of
   the ``add`` (the residual may be computed after the conv, e.g. a downsampling shortcut).
   ``(acc * m + b) + r`` there is the same single float addition the ``add`` node does, so the
   values are identical bit for bit.
2. **A reader folded into its producer.** A node whose only reader is an op its registry entry
   absorbs (:attr:`onebit.runtime.ops.OpSpec.absorbs`: an int8 or direct float conv and the max
   pool after it) runs as one step; the kernel applies the reader before storing, with the same
   kernel code the reader's own step runs, so the values are identical.
3. **The model's input read as NCHW.** When the graph's input has one reader and its op reads
   NCHW as it is (:attr:`~onebit.runtime.ops.OpSpec.nchw_input`), that step takes the caller's
   NCHW batch without the transposed NHWC copy (``Step.nchw``).
4. **Signs packed where they are made.** A float-output ``bconv2d`` step (fused or not) whose
   value feeds later ``bconv2d`` steps (that would each pack ``sign(value)`` on entry) also
   returns the packed signs of its output from the same pass (``<value>#bits``), and those readers
   take the bits instead. XNOR-Net convs, which need the float input for their K map, keep it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace

from onebit.runtime.graph import Graph, Node, ValueInfo
from onebit.runtime.ops import OPS

__all__ = ["BITS_SUFFIX", "Step", "plan"]

BITS_SUFFIX = "#bits"  # (lengthened with more "#" should the graph use such a name itself)


@dataclass(frozen=True)
class Step:
    """One call of the executor: ``nodes`` is a single node, or ``(bconv2d, add)`` fused.

    ``inputs`` are the values it reads (for a fused step: the conv's input, then the residual);
    ``outputs`` the values it makes: its own, then ``<own>#bits`` where it also packs signs.
    ``(node, reader)`` with a reader its op absorbs is one step too (:attr:`absorbed`); ``nchw``
    marks a step that reads the model's input in the caller's NCHW layout.
    """

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    nchw: bool = False

    @property
    def fused(self) -> bool:
        """A binary conv with the residual add after it."""
        return len(self.nodes) > 1 and self.nodes[1].op == "add" and self.nodes[0].op == "bconv2d"

    @property
    def absorbed(self) -> Node | None:
        """The reader folded into this step's node (fusion 2), if any."""
        return self.nodes[1] if len(self.nodes) > 1 and not self.fused else None

    @property
    def sign_bits(self) -> bool:
        return len(self.outputs) > 1


def _reads_signs(step: Step) -> bool:
    """A step that packs the signs of its (float) first input itself: a binary conv without the
    XNOR K map (which needs the float input)."""
    head = step.nodes[0]
    return head.op == "bconv2d" and not head.attrs.get("xnor_k", False)


def plan(graph: Graph, infos: dict[str, ValueInfo], fuse: bool = True) -> list[Step]:
    """The steps that run ``graph`` (``infos`` from ``graph.validate()``); ``fuse=False`` gives
    one step per node (and the input in NHWC)."""
    nodes = graph.nodes
    if not fuse:
        return [Step((n,), tuple(n.inputs), (n.output,)) for n in nodes]
    readers: dict[str, list[int]] = defaultdict(list)
    for i, n in enumerate(nodes):
        for name in n.inputs:
            readers[name].append(i)
    conv_of_add: dict[int, int] = {}
    for i, n in enumerate(nodes):
        if n.op != "bconv2d" or n.attrs["output"] != "float" or n.output == graph.output:
            continue
        users = readers[n.output]
        if len(users) != 1 or nodes[users[0]].op != "add":
            continue
        add = nodes[users[0]]
        if len(add.inputs) != 2 or add.inputs[0] == add.inputs[1]:
            continue
        other = add.inputs[1] if add.inputs[0] == n.output else add.inputs[0]
        if infos[other].kind != "float" or infos[other].shape != infos[n.output].shape:
            continue
        conv_of_add[users[0]] = i
    fused_convs = set(conv_of_add.values())
    absorbed: dict[int, int] = {}  # producer -> the reader it absorbs
    for i, n in enumerate(nodes):
        spec = OPS[n.op]
        users = readers[n.output]
        if spec.absorbs is None or n.output == graph.output or len(users) != 1 or \
                users[0] in absorbed.values() or i in absorbed.values():
            continue
        if spec.absorbs(n, nodes[users[0]]):
            absorbed[i] = users[0]
    taken = {graph.input} | {n.output for n in nodes}
    steps: list[Step] = []
    for j, n in enumerate(nodes):
        if j in fused_convs or j in absorbed.values():
            continue
        if j in conv_of_add:
            conv = nodes[conv_of_add[j]]
            other = n.inputs[1] if n.inputs[0] == conv.output else n.inputs[0]
            steps.append(Step((conv, n), (conv.inputs[0], other), (n.output,)))
        elif j in absorbed:
            reader = nodes[absorbed[j]]
            steps.append(Step((n, reader), tuple(n.inputs), (reader.output,)))
        else:
            steps.append(Step((n,), tuple(n.inputs), (n.output,)))
    first = [k for k, st in enumerate(steps) if graph.input in st.inputs]
    if len(first) == 1 and len(infos[graph.input].shape) == 3:
        k = first[0]
        reads_nchw = OPS[steps[k].nodes[0].op].nchw_input
        if steps[k].inputs == (graph.input,) and reads_nchw and reads_nchw(steps[k].nodes[0]):
            steps[k] = replace(steps[k], nchw=True)
    for k, s in enumerate(steps):
        head = s.nodes[0]
        if head.op != "bconv2d" or head.attrs["output"] != "float":
            continue
        value = s.outputs[0]
        later = [r for r in range(k + 1, len(steps))
                 if _reads_signs(steps[r]) and steps[r].inputs[0] == value]
        if not later:
            continue
        bits = value + BITS_SUFFIX
        while bits in taken:
            bits += "#"
        taken.add(bits)
        steps[k] = replace(s, outputs=(value, bits))
        for r in later:
            steps[r] = replace(steps[r], inputs=(bits,) + steps[r].inputs[1:])
    return steps
