#!/usr/bin/env bash
# Fresh-machine set-up: a virtual environment in .venv with the plugin and its pinned stack,
# CIFAR-10 and the HTBA triggers in data/ from a local offline copy when the machine has one.
# Safe to re-run: existing data files are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's own status decides (a full disk or a missing wheel must stop here, not at the first
# import); its harmless "WARNING: Location" lines are filtered from what is shown
if ! .venv/bin/python -m pip install -q --disable-pip-version-check \
        -c requirements/constraints.txt -e ".[tests]" > .venv/pip-install.log 2>&1; then
    grep -v "^WARNING: Location" .venv/pip-install.log >&2 || true
    echo "error: pip install failed (full log: .venv/pip-install.log)" >&2
    exit 1
fi
grep -v "^WARNING: Location" .venv/pip-install.log || true
.venv/bin/python -m pip check
.venv/bin/python -c "import torch, torchvision, mmengine, mmpretrain, bmaiu_plugin" || {
    echo "error: the installed stack does not import (see above)" >&2; exit 1; }
# mim looks for <site-packages>/bmaiu_plugin/.mim/{configs,tools}; a PEP 660 editable install has no
# such folder, so link the source package there (imports resolve to the same files either way).
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -e "$SITE/bmaiu_plugin" ] || ln -s "$PWD/bmaiu_plugin" "$SITE/bmaiu_plugin"
SHARED=../shared/data
if [ -f "$SHARED/cifar10/cifar10_jpeg.npz" ] && [ ! -f data/cifar10/cifar-10-batches-py/test_batch ]; then
    .venv/bin/python tools/dataset_converters/prepare_cifar10.py --jpeg-npz "$SHARED/cifar10/cifar10_jpeg.npz" data/cifar10
fi
if [ -d "$SHARED/triggers" ]; then
    mkdir -p data/triggers && cp -rn "$SHARED/triggers/." data/triggers/
fi
echo "environment ready: .venv (activate with: source .venv/bin/activate)"
