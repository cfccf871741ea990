"""What the int8 float convs cost in accuracy: a trained run, deployed with its float stem as
trained and with the stem (or every float conv) in int8, all on the whole test split.

    python benchmarks/int8_accuracy.py runs/bireal_fmnist_cnn_fashion_mnist \
        [--calibration-images 512] [--out benchmarks/out/int8_accuracy.json]

The run's model is converted once (float32 float layers), then that graph is quantized with
:func:`onebit.deploy.int8_convs.quantize_float_convs` calibrated on the first N *training* images
(never on test images): the stem with 8-bit and with 7-bit inputs (7 bits run faster, see
``benchmarks/int8conv.py``), and every float conv with 8-bit inputs. Each graph runs in the
torch-free runtime beside the PyTorch model; the script prints each accuracy, its difference to
the float deployment in points, and how many test predictions differ from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runs import load_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory (holds model.safetensors)")
    p.add_argument("--calibration-images", type=int, default=512)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args(argv)

    import onebit.runtime as rt
    from onebit.deploy import convert
    from onebit.deploy.int8_convs import quantize_float_convs

    r = load_run(a.run, a.data_dir, "int8_accuracy")
    model, train_x, test_x, test_y = r.model, r.train_x, r.test_x, r.test_y
    graph = convert(model, example_input_shape=r.input_size, class_names=r.class_names,
                    normalization=r.normalization)
    float_rt = rt.Model(graph)
    calib = float_rt.preprocess(train_x[:a.calibration_images])
    variants = {
        "float": graph,
        "stem int8 (8-bit inputs)": quantize_float_convs(graph, calib, scope="stem"),
        "stem int8 (7-bit inputs)": quantize_float_convs(graph, calib, scope="stem", act_bits=7),
        "all float convs int8 (8-bit inputs)": quantize_float_convs(graph, calib, scope="all"),
    }
    models = {k: rt.Model(g) for k, g in variants.items()}
    x = float_rt.preprocess(test_x)
    preds: dict[str, list[np.ndarray]] = {"PyTorch": [], **{k: [] for k in models}}
    with torch.no_grad():
        for i in range(0, len(x), 500):
            xb = x[i:i + 500]
            preds["PyTorch"].append(model(torch.from_numpy(xb)).argmax(1).numpy())
            for k, m in models.items():
                preds[k].append(m.predict(xb))
    pred = {k: np.concatenate(v) for k, v in preds.items()}
    rows = {k: {"accuracy": float((v == test_y).mean()),
                "points_vs_float": 100 * float((v == test_y).mean() - (pred["float"] == test_y).mean()),
                "predictions_differing_from_float": int((v != pred["float"]).sum()),
                "quantized_convs": sum(n.op == "conv2d_int8" for n in variants[k].nodes)
                if k in variants else 0}
            for k, v in pred.items()}
    print(f"{a.run} ({graph.method}, {len(test_y)} test images, "
          f"{a.calibration_images} calibration images from the training split)")
    print(f"{'deployment':<38} {'convs int8':>10} {'accuracy':>9} {'vs float':>9} {'differ':>7}")
    for k, r in rows.items():
        print(f"{k:<38} {r['quantized_convs']:>10} {100 * r['accuracy']:>8.2f}% "
              f"{r['points_vs_float']:>+8.2f} {r['predictions_differing_from_float']:>7}")
    if a.out:
        Path(a.out).write_text(json.dumps({"run": str(a.run), "test_images": int(len(test_y)),
                                           "calibration_images": a.calibration_images,
                                           "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
