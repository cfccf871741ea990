"""Where a whole model's time goes: Bi-Real-18 (224x224, random weights, as in models.py) in
onebit's runtime, each step of the plan timed on its own (medians over the calls), then the sums
per op kind.

    python benchmarks/model_steps.py [--float-convs float|int8] [--threads 1] [--calls 30] [-v]

The model runs as ``model(x)`` always does, each step's kernel wrapped in a timer (a few
microseconds per step). Prints the CPU line, the per-op sums (and with -v
every step with its input shape) and the kernel each binary conv chose at load.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402
from models import _binary_models  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--float-convs", choices=["float", "int8"], default="int8")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    import torch

    import onebit.runtime as rt
    from onebit.deploy import convert, save

    torch.set_num_threads(1)
    print(_machine.header(_machine.describe()))
    model = _binary_models()["Bi-Real-18"]
    kw = {}
    if a.float_convs == "int8":
        kw = dict(float_convs="int8", calibration=np.random.default_rng(8).standard_normal(
            (16, 3, 224, 224)).astype(np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onebit"
        save(convert(model, example_input_shape=(3, 224, 224), **kw), path)
        m = rt.load(path, num_threads=a.threads)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    # each step's kernel wrapped in a timer; the model then runs as it always does (model(x))
    times: list[list[float]] = [[] for _ in m._steps]
    names: list[str] = []

    def timed(i: int, fn, ops: str):
        def run(xs, num_threads, *into):
            if len(names) == i:  # the first call names the step by its input's shape
                names.append(f"{ops} {'x'.join(map(str, xs[0].shape[1:]))}")
            t0 = time.perf_counter()
            out = fn(xs, num_threads, *into)  # into: the step's planned output arrays
            times[i].append(time.perf_counter() - t0)
            return out
        run.takes_out = getattr(fn, "takes_out", False)
        return run

    m._steps = [(timed(i, fn, "+".join(n.op for n in step.nodes)), inputs, outputs)
                for i, ((fn, inputs, outputs), step) in enumerate(zip(m._steps, m.steps))]
    m(x)  # warm-up
    for t in times:
        t.clear()
    calls = []
    for _ in range(a.calls):
        t0 = time.perf_counter()
        m(x)
        calls.append(time.perf_counter() - t0)
    med = [1e3 * float(np.median(t)) for t in times]
    if a.verbose:
        for name, t in zip(names, med):
            print(f"{t:8.3f} ms  {name}")
        print()
    per_op: dict[str, float] = collections.defaultdict(float)
    for name, t in zip(names, med):
        per_op[name.split(" ")[0]] += t
    print(f"Bi-Real-18, float convs {a.float_convs}, {a.threads} thread(s), medians of {a.calls} "
          "calls per step:")
    for op, t in sorted(per_op.items(), key=lambda kv: -kv[1]):
        print(f"{t:8.3f} ms  {op}")
    print(f"{sum(med):8.3f} ms  total of the steps")
    print(f"{1e3 * float(np.median(calls)):8.3f} ms  model(x), median of the same calls")
    kernels = collections.Counter(c["kernel"] for c in m.kernel_choices())
    print("binary conv kernels: " + ", ".join(f"{n} x {k}" for k, n in kernels.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
