#!/usr/bin/env bash
# Train every ResNet-20 recipe (configs/<method>_resnet20_fashion_mnist.yaml) for every seed, then
# write the seeds table and plot (benchmarks/resnet20.py -> runs/resnet20/results.md, .png).
#
#   benchmarks/run_resnet20.sh                                  # seeds 0 and 1, every method
#   SEEDS=1 METHODS="float bireal" benchmarks/run_resnet20.sh   # some seeds, some methods
#   LANES=2 benchmarks/run_resnet20.sh                          # two runs at a time, 1 thread each
#
# Seed k writes runs/resnet20/seed<k>/<recipe>/. An interrupted run continues (--resume) when the
# script is started again; finished runs are skipped (see benchmarks/run_fmnist.sh). One seed of
# all seven methods takes about 4 hours on 2 CPU cores (10 epochs of 2-6 min each per method).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
RUNS=${RUNS:-runs/resnet20}
for seed in ${SEEDS:-0 1}; do
  recipes=()
  for m in ${METHODS:-float biper bireal xnor bnn bwn addernet}; do
    recipes+=("configs/${m}_resnet20_fashion_mnist.yaml")
  done
  RECIPES="${recipes[*]}" RUNS="$RUNS/seed$seed" NO_TABLE=1 benchmarks/run_fmnist.sh "seed=$seed" "$@"
done
"$PY" benchmarks/resnet20.py "$RUNS"
