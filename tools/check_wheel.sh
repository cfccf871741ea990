#!/usr/bin/env bash
# Check a repaired wheel the way a user without a compiler or PyTorch gets it.
#
#   tools/check_wheel.sh [WHEEL]       (default: the newest dist/onebit-*manylinux*.whl)
#
# 1. The build tree (BUILD_PY, default .venv/bin/python, with torch) writes a small .onebit model,
#    images, labels and the runtime's logits (tools/wheel_fixture.py) and runs `onebit predict`.
# 2. A fresh venv (BASE_PY, default python3) installs the wheel from binaries only
#    (--only-binary :all:) and must not have torch; PATH then holds that venv's bin/ alone, so no
#    compiler is reachable.
# 3. There: the runtime's logits must equal the build tree's bit for bit, `onebit predict` must
#    print the same predictions and accuracy, and every test module that imports without torch
#    and the other train-extra packages runs (tools/skip_train_imports.py skips the rest).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_PY=${BUILD_PY:-.venv/bin/python}
BASE_PY=${BASE_PY:-python3}
WHEEL=${1:-$(ls -t dist/onebit-*manylinux*.whl | head -1)}
WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
WORK=$(mktemp -d)
RM=$(command -v rm)
trap '"$RM" -rf "$WORK"' EXIT
FIX=$WORK/fixture

echo "== build tree: fixture and reference predictions"
"$BUILD_PY" tools/wheel_fixture.py "$FIX"
"$BUILD_PY" -m onebit predict "$FIX/model.onebit" --images "$FIX/images.npy" \
  --labels "$FIX/labels.npy" --json > "$FIX/build.json"

echo "== fresh venv: $(basename "$WHEEL")"
"$BASE_PY" -m venv "$WORK/venv"
V=$WORK/venv/bin
"$V/python" -m pip install -q --disable-pip-version-check --only-binary :all: "$WHEEL" \
  "pytest>=7" "hypothesis>=6.80"
cp -r tests "$WORK/tests"
cp pyproject.toml "$WORK/"        # pytest's settings (markers); no src/ beside it
cd "$WORK"
cp "$ROOT/tools/skip_train_imports.py" "$WORK/"
export PATH=$V
for tool in cc gcc g++ c++ clang clang++ cmake; do
  if command -v "$tool" >/dev/null; then echo "check_wheel: $tool is on PATH" >&2; exit 1; fi
done
python - "$FIX" "$ROOT" <<'PY'
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

import onebit
import onebit.runtime as rt

fix, root = Path(sys.argv[1]), Path(sys.argv[2]).resolve()
assert importlib.util.find_spec("torch") is None, "torch is installed in the wheel's venv"
assert root not in Path(onebit.__file__).resolve().parents, f"onebit came from {onebit.__file__}"
pkg = Path(onebit.__file__).parent
assert (pkg / "py.typed").is_file(), "py.typed is missing from the wheel"
model = rt.load(fix / "model.onebit", num_threads=1)
logits = model(model.preprocess(np.load(fix / "images.npy")))
np.testing.assert_array_equal(logits, np.load(fix / "logits.npy"))
out = subprocess.run(["onebit", "predict", str(fix / "model.onebit"), "--images",
                      str(fix / "images.npy"), "--labels", str(fix / "labels.npy"), "--json"],
                     check=True, capture_output=True, text=True).stdout
wheel, build = json.loads(out), json.loads((fix / "build.json").read_text())
assert wheel["predictions"] == build["predictions"], "predictions differ from the build tree"
assert wheel["accuracy"] == build["accuracy"]
print(f"runtime from {pkg}: logits identical to the build tree's; onebit predict accuracy "
      f"{100 * wheel['accuracy']:.2f}% on {wheel['images']} images in both")
PY
echo "== the tests that import without the train extra (the others are reported as skipped)"
PYTHONPATH=$WORK python -m pytest -q -p no:cacheprovider -p skip_train_imports -rs tests
