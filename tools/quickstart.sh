#!/usr/bin/env bash
# The README's main job: the quickstart pipeline (configs/pipelines/quickstart.py) on real
# CIFAR-10 at CPU scale: SimCLR pretraining -> SSL-Backdoor, CTRL, BadEncoder, ESTAS -> no
# defense, CLP, BMAIU -> linear probe of every encoder -> results.md / results.csv and figures in
# work_dirs/quickstart_pipeline/.  About 30-40 min on 2 cores.  Finished steps are skipped, so
# running it again resumes; extra arguments go to tools/pipeline.py (e.g. --work-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}; [ -x "$PY" ] || PY=python
exec "$PY" tools/pipeline.py configs/pipelines/quickstart.py "$@"
