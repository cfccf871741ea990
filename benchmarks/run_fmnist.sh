#!/usr/bin/env bash
# Train every Fashion-MNIST recipe (configs/*_fmnist_cnn_fashion_mnist.yaml) in sequence, then
# write the comparison table and plot (runs/results.md, runs/results.png).
#
#   benchmarks/run_fmnist.sh                      # all recipes, full length
#   benchmarks/run_fmnist.sh trainer.max_epochs=2 # any override is passed to every recipe
#   RUNS=out/ benchmarks/run_fmnist.sh            # another output directory
#   RECIPES="configs/a.yaml configs/b.yaml" benchmarks/run_fmnist.sh   # only these recipes
#   LANES=2 benchmarks/run_fmnist.sh              # two recipes at a time, one thread each
#   NO_TABLE=1 benchmarks/run_fmnist.sh           # train only (benchmarks/run_resnet20.sh uses this)
#
# An interrupted run is continued (--resume) when the script is started again; finished runs are
# skipped. Each recipe writes runs/<recipe>/ (see `onebit train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
RUNS=${RUNS:-runs}

if [ "${LANES:-1}" -gt 1 ]; then
  # split the recipes over LANES background copies of this script, one torch thread each
  if [ -n "${RECIPES:-}" ]; then read -r -a all <<< "$RECIPES"
  else mapfile -t all < <(ls configs/*_fmnist_cnn_fashion_mnist.yaml); fi
  pids=()
  mkdir -p "$RUNS"
  for ((lane = 0; lane < LANES; lane++)); do
    mine=()
    for ((i = lane; i < ${#all[@]}; i += LANES)); do mine+=("${all[i]}"); done
    RECIPES="${mine[*]}" LANES=1 NO_TABLE=1 "$0" trainer.threads=1 "$@" > "$RUNS/lane$lane.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  [ "$status" = 0 ] || { echo "a lane failed: see $RUNS/lane*.log" >&2; exit 1; }
  [ -n "${NO_TABLE:-}" ] || exec "$PY" benchmarks/results.py "$RUNS"
  exit 0
fi

for recipe in ${RECIPES:-configs/float_fmnist_cnn_fashion_mnist.yaml configs/*_fmnist_cnn_fashion_mnist.yaml}; do
  name=$(basename "$recipe" .yaml)
  case " ${done_names:-} " in *" $name "*) continue ;; esac
  done_names="${done_names:-} $name"
  if [ -f "$RUNS/$name/results.json" ]; then
    echo "== $name: finished already ($RUNS/$name/results.json)"
    continue
  fi
  resume=()
  [ -f "$RUNS/$name/config.yaml" ] && resume=(--resume)
  echo "== $name"
  "$PY" -m onebit train --config "$recipe" --output "$RUNS" "${resume[@]}" "$@"
done

[ -n "${NO_TABLE:-}" ] || "$PY" benchmarks/results.py "$RUNS"
