"""Latency of calls that come after a pause: Bi-Real-18 (224x224, random weights, int8 float
layers, as in models.py) in onebit's runtime, called back to back and after pauses, at 1 and 2
threads, with the kernels' default worker spin and with workers kept spinning through the pause
(``onebit.kernels.set_worker_spin_us``).

    python benchmarks/pause_latency.py [--pause-ms 50] [--calls 30] [--out F.json]

For every setting the model runs ``--calls`` times, each call after the pause (none for "back to
back"); medians and minima of the calls are printed. At more than one thread a call that comes
after a pause finds onebit's worker threads asleep (their default spin lasts tens of
microseconds); a spin longer than the pause keeps them awake, at the price of a busy core while
it lasts. Only onebit runs here, so no other program's threads compete for the cores.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
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
    p.add_argument("--pause-ms", type=float, default=50.0)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args()
    import torch

    import onebit.kernels as K
    import onebit.runtime as rt
    from onebit.deploy import convert, save

    torch.set_num_threads(1)
    machine = _machine.describe()
    print(_machine.header(machine))
    model = _binary_models()["Bi-Real-18"]
    calib = np.random.default_rng(8).standard_normal((16, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onebit"
        save(convert(model, example_input_shape=(3, 224, 224), float_convs="int8",
                     calibration=calib), path)
        models = {t: rt.load(path, num_threads=t) for t in (1, 2)}
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    long_spin = int(2 * a.pause_ms * 1e3)
    settings = [("back to back", 0.0, None), (f"after {a.pause_ms:g} ms", a.pause_ms, None),
                (f"after {a.pause_ms:g} ms, workers spin {long_spin // 1000} ms", a.pause_ms,
                 long_spin)]
    rows = []
    print(f"\nBi-Real-18, int8 float layers, batch 1; {a.calls} calls per row\n")
    print(f"{'calls':<36} {'threads':>7} {'median ms':>10} {'min ms':>8}")
    try:
        for name, pause_ms, spin in settings:
            K.set_worker_spin_us(spin)
            for threads, m in models.items():
                for _ in range(3):
                    m(x)
                times = []
                for _ in range(a.calls):
                    if pause_ms:
                        time.sleep(pause_ms / 1e3)
                    t0 = time.perf_counter()
                    m(x)
                    times.append(1e3 * (time.perf_counter() - t0))
                row = {"calls": name, "threads": threads, "pause_ms": pause_ms,
                       "worker_spin_us": spin, "median_ms": statistics.median(times),
                       "min_ms": min(times)}
                rows.append(row)
                print(f"{name:<36} {threads:>7} {row['median_ms']:>10.2f} {row['min_ms']:>8.2f}",
                      flush=True)
    finally:
        K.set_worker_spin_us(None)
    kernels = collections.Counter(c["kernel"] for c in models[1].kernel_choices())
    print("binary conv kernels (1 thread): " + ", ".join(f"{n} x {k}" for k, n in kernels.items()))
    if a.out:
        a.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
