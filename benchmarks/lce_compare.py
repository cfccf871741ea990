"""onebit's binary conv2d beside Larq Compute Engine (LCE) on the ResNet-18 3x3 layer shapes.

Needs ``larq-compute-engine`` (its converter needs ``tensorflow-cpu==2.15.1`` and ``larq==0.13.3``)
in the same environment as onebit; where they are missing the script prints one line and exits 0.
Keep TensorFlow out of onebit's main virtualenv: use a separate one, e.g.

    python3.11 -m venv /tmp/lce-venv
    /tmp/lce-venv/bin/pip install tensorflow-cpu==2.15.1 larq==0.13.3 larq-compute-engine numpy
    PYTHONPATH=src /tmp/lce-venv/bin/python benchmarks/lce_compare.py --out lce.json

(``PYTHONPATH=src`` finds onebit's Python code; its compiled module ``onebit/_kernels*.so`` must
be importable there too, built for that Python version from the same sources: copy the one that
``make build`` installed into ``.venv/lib/python3.11/site-packages/onebit/`` to the same place in
the LCE venv, or ``pip install --no-deps .`` into it.)

Each shape becomes a one-layer Keras model (larq ``QuantConv2D`` with ``ste_sign`` input and
kernel quantizers, ``padding="same"`` with ``pad_values=1.0``, no bias) converted by LCE; the same
+/-1 weights run through ``onebit.kernels.bconv2d`` with ``pad_value=1.0``. The outputs are
checked equal first. Timings are medians over blocks of back-to-back calls, the three taking
turns block by block (benchmarks/_timing.py), at 1 and 2 threads, for LCE's default
kernel and its indirect BGEMM; onebit is timed from float NHWC input (packing included) so both
do the same work, with its filters prepared once as LCE's are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import header  # noqa: E402
from _timing import block_times, summarize  # noqa: E402

SHAPES = [(56, 64, 64), (28, 128, 128), (14, 256, 256), (7, 512, 512)]  # (H=W, C_in, C_out), 3x3 s1


def _load_lce():
    try:
        import larq  # noqa: F401
        import larq_compute_engine as lce
        import tensorflow as tf
    except ImportError as exc:
        return None, None, str(exc)
    return lce, tf, None


def run(repeats: int, threads: list[int]) -> dict:
    lce, tf, err = _load_lce()
    if lce is None:
        return {"skipped": err}
    import larq as lq

    import onebit.kernels as K

    rng = np.random.default_rng(0)
    rows = []
    for hw, cin, cout in SHAPES:
        w = np.where(rng.random((3, 3, cin, cout)) < 0.5, -1.0, 1.0).astype(np.float32)  # HWIO
        x = rng.standard_normal((1, hw, hw, cin)).astype(np.float32)
        inp = tf.keras.Input((hw, hw, cin), batch_size=1)
        layer = lq.layers.QuantConv2D(cout, 3, padding="same", pad_values=1.0, use_bias=False,
                                      input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                                      kernel_constraint="weight_clip")
        model = tf.keras.Model(inp, layer(inp))
        layer.set_weights([w])
        flat = lce.convert_keras_model(model)
        wp = K.prepare_conv_weight(K.pack_conv_weight(np.ascontiguousarray(w.transpose(3, 2, 0, 1))),
                                   in_channels=cin)  # LCE, too, packs its filters once

        def onebit_conv(t):
            return K.bconv2d(K.pack_bits(x), wp, in_channels=cin, padding=1, pad_value=1.0,
                             output="float", num_threads=t)

        for t in threads:
            interp = {name: lce.testing.Interpreter(flat, num_threads=t, use_indirect_bgemm=ind)
                      for name, ind in (("lce", False), ("lce_indirect", True))}
            ref = onebit_conv(t)
            for name, it in interp.items():
                out = it.predict(x)
                if not np.array_equal(np.asarray(out).reshape(ref.shape), ref):
                    raise SystemExit(f"{hw}x{hw}x{cin}: {name} and onebit disagree")
            fns = [lambda: interp["lce"].interpreter.predict([x]),
                   lambda: interp["lce_indirect"].interpreter.predict([x]),
                   lambda: onebit_conv(t)]
            (t_lce, _), (t_ind, _), (t_ob, _) = summarize(block_times(fns, repeats))
            rows.append({"shape": f"{hw}x{hw}x{cin}->{cout} 3x3", "threads": t, "lce_ms": t_lce * 1e3,
                         "lce_indirect_ms": t_ind * 1e3, "onebit_ms": t_ob * 1e3,
                         "speedup_vs_best_lce": min(t_lce, t_ind) / t_ob})
    return {"lce_version": getattr(lce, "__version__", "?"), "tensorflow": tf.__version__,
            "onebit_isa": K.active_isa(), "repeats": repeats, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    print(header())
    res = run(args.repeats, args.threads)
    if "skipped" in res:
        print(f"lce_compare: skipped, Larq Compute Engine / TensorFlow / larq not importable "
              f"({res['skipped']})")
        return 0
    print(f"LCE {res['lce_version']} (TensorFlow {res['tensorflow']}) vs onebit ({res['onebit_isa']}), "
          f"medians of {res['repeats']} blocks of back-to-back calls")
    print(f"{'shape':<24} {'thr':>3} {'LCE ms':>8} {'LCE ind ms':>10} {'onebit ms':>10} {'vs best':>8}")
    for r in res["rows"]:
        print(f"{r['shape']:<24} {r['threads']:>3} {r['lce_ms']:>8.3f} {r['lce_indirect_ms']:>10.3f} "
              f"{r['onebit_ms']:>10.3f} {r['speedup_vs_best_lce']:>7.2f}x")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
