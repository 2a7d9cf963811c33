#!/usr/bin/env bash
# The README's main job: the quickstart pipeline (configs/pipelines/quickstart.py) on real
# CIFAR-10 at CPU scale: SimCLR pretraining -> BadEncoder -> no defense, CLP, BMAIU, the
# searched-trigger BMAIU, the fine-tuning-only control -> linear probe of every encoder ->
# results.md / results.csv and figures in work_dirs/quickstart_pipeline/, with a live status line
# (step, epoch, ETAs) and one summary line per finished step.  Measured times: docs/results.md.
# ESTAS and the poisoning rows (SSL-Backdoor, CTRL) are opt-in, in the same work dir:
#   .venv/bin/python tools/pipeline.py configs/pipelines/quickstart_full.py
# Finished steps are skipped, so running it again resumes; extra arguments go to
# tools/pipeline.py (e.g. --work-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}; [ -x "$PY" ] || PY=python
exec "$PY" tools/pipeline.py configs/pipelines/quickstart.py "$@"
