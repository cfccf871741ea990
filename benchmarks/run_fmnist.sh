#!/usr/bin/env bash
# Train every Fashion-MNIST recipe (configs/*_fmnist_cnn_fashion_mnist.yaml) in sequence, then
# write the comparison table and plot (runs/results.md, runs/results.png).
#
#   benchmarks/run_fmnist.sh                      # all recipes, full length
#   benchmarks/run_fmnist.sh trainer.max_epochs=2 # any override is passed to every recipe
#   RUNS=out/ benchmarks/run_fmnist.sh            # another output directory
#
# An interrupted run is continued (--resume) when the script is started again; finished runs are
# skipped. Each recipe writes runs/<recipe>/ (see `onebit train --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
RUNS=${RUNS:-runs}

for recipe in configs/float_fmnist_cnn_fashion_mnist.yaml configs/*_fmnist_cnn_fashion_mnist.yaml; do
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

"$PY" benchmarks/results.py "$RUNS"
