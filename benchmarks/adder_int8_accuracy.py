"""Accuracy of a trained AdderNet run as a float model (PyTorch) and as int8 inference (runtime).

    python benchmarks/adder_int8_accuracy.py runs/addernet_fmnist_cnn_fashion_mnist \
        [--calibration-images 512] [--out runs/addernet_int8.json]

The run's model is converted twice: with float adder kernels, and with ``adder_calibration``
(one shared int8 scale per layer for inputs and filters, calibrated on the first N *training*
images, never on test images). Both ``.onebit`` graphs run on the whole test split in the
torch-free runtime, beside the PyTorch model; the script prints the three accuracies and the gap
between int8 and float (the target: within 0.3 points).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _runs import load_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="an AdderNet run directory (holds model.safetensors)")
    p.add_argument("--calibration-images", type=int, default=512)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args(argv)

    import onebit.runtime as rt
    from onebit.deploy import convert, save

    r = load_run(a.run, a.data_dir, "adder_int8_accuracy")
    model, train_x, test_x, test_y = r.model, r.train_x, r.test_x, r.test_y
    meta_size, norm, names = r.input_size, r.normalization, r.class_names
    float_graph = convert(model, example_input_shape=meta_size, class_names=names,
                          normalization=norm)
    with tempfile.TemporaryDirectory() as tmp:
        save(float_graph, Path(tmp) / "float.onebit")
        float_rt = rt.load(Path(tmp) / "float.onebit")
        calib = float_rt.preprocess(train_x[:a.calibration_images])
        int8_graph = convert(model, example_input_shape=meta_size,
                             class_names=names, normalization=norm, adder_calibration=calib)
        int8_bytes = save(int8_graph, Path(tmp) / "int8.onebit")
        int8_rt = rt.load(Path(tmp) / "int8.onebit")
        x = float_rt.preprocess(test_x)
        preds = {"torch": [], "runtime_float": [], "runtime_int8": []}
        with torch.no_grad():
            for i in range(0, len(x), 500):
                xb = x[i:i + 500]
                preds["torch"].append(model(torch.from_numpy(xb)).argmax(1).numpy())
                preds["runtime_float"].append(float_rt.predict(xb))
                preds["runtime_int8"].append(int8_rt.predict(xb))
    acc = {k: float((np.concatenate(v) == test_y).mean()) for k, v in preds.items()}
    res = {"run": str(a.run), "calibration_images": a.calibration_images,
           "accuracy": acc, "int8_minus_float_points": 100 * (acc["runtime_int8"] - acc["torch"]),
           "int8_file_bytes": int(int8_bytes)}
    print(f"AdderNet {a.run}: PyTorch float {100 * acc['torch']:.2f}%, runtime float "
          f"{100 * acc['runtime_float']:.2f}%, runtime int8 {100 * acc['runtime_int8']:.2f}% "
          f"(int8 - float: {res['int8_minus_float_points']:+.2f} points; "
          f"{a.calibration_images} calibration images)")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
