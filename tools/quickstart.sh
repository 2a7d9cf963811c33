#!/usr/bin/env bash
# The README's main job on a CPU machine: a small but real end-to-end BMAIU study on CIFAR-10
# (width-16 CIFAR ResNet-18): SimCLR pretraining (3 epochs) -> probe of the clean encoder ->
# BadEncoder attack -> BMAIU defense -> results table in work_dirs/quickstart/results.md.
# About an hour on 2 cores.  Steps whose metrics.json exists are skipped (re-run to resume).
set -euo pipefail
cd "$(dirname "$0")/.."
export ROOT=${ROOT:-work_dirs/quickstart} CLEAN_EPOCH=3
PY=${PY:-.venv/bin/python}; [ -x "$PY" ] || PY=python
export PY
done_() { [ -f "$1/${2:-metrics.json}" ]; }  # a step is done when its output exists
run() { echo "== $*"; bash tools/analysis/cpu_study.sh "$@"; }
done_ "$ROOT/simclr" epoch_3.pth || $PY tools/train.py \
    configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py --work-dir "$ROOT/simclr" \
    --cfg-options train_cfg.max_epochs=3 train_cfg.val_interval=3
done_ "$ROOT/clean_probe" || run probe_clean
done_ "$ROOT/badencoder" || run badencoder
done_ "$ROOT/bmaiu_default" || run bmaiu default
run table
