#!/usr/bin/env bash
# Fresh-machine set-up: a virtual environment in .venv with the plugin and its pinned stack,
# CIFAR-10 and the HTBA triggers in data/ when ../shared/data has them (offline machines).
# Safe to re-run: existing data files are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check \
    -c requirements/constraints.txt -e ".[tests]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip check
# mim looks for <site-packages>/bmaiu_plugin/.mim/{configs,tools}; a PEP 660 editable install has no
# such folder, so link the source package there (imports resolve to the same files either way).
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
[ -e "$SITE/bmaiu_plugin" ] || ln -s "$PWD/bmaiu_plugin" "$SITE/bmaiu_plugin"
SHARED=../shared/data
if [ -f "$SHARED/cifar10/build_cifar10.py" ] && [ ! -f data/cifar10/cifar-10-batches-py/test_batch ]; then
    .venv/bin/python "$SHARED/cifar10/build_cifar10.py" data/cifar10
fi
if [ -d "$SHARED/triggers" ]; then
    mkdir -p data/triggers && cp -rn "$SHARED/triggers/." data/triggers/
fi
echo "environment ready: .venv (activate with: source .venv/bin/activate)"
