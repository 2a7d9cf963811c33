#!/usr/bin/env bash
# Trigger-family battery, attack side, at the quickstart's scale: a w16 SimCLR encoder (3 epochs
# on 20,000 training images, BA about 36) and BadEncoder's fine-tuning (5 epochs on 10 % shadow
# data, batch 64, lr 0.01) with each family's trigger; probe on 5,000 training / 2,000 test images.
#   bash projects/trigger_battery/run_w16.sh [FAMILY ...]     # default: every family
# Families: patch4 patch14 blend warp ctrl (configs/attacks/badencoder-<family>_*).  The clean
# encoder's probe reports every family's ASR; each attack's work dir has its own metrics.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
W=${WORK:-work_dirs/w16_families}
FAMILIES=${*:-patch4 patch14 blend warp ctrl}
ALL="val_cfg.probe_dataloader.dataset.indices=5000 test_cfg.probe_dataloader.dataset.indices=5000
 val_dataloader.dataset.indices=2000 test_dataloader.dataset.indices=2000"
presets=$(printf 'badencoder-%s,' $FAMILIES)
[ -f "$W/simclr/epoch_3.pth" ] || $PY tools/train.py \
    configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py --work-dir "$W/simclr" \
    --cfg-options $ALL train_cfg.max_epochs=3 train_cfg.val_interval=3 param_scheduler.1.T_max=2 \
    param_scheduler.1.end=3 train_dataloader.dataset.indices=20000 \
    "evaluate_attack=[${presets%,}]"
for f in $FAMILIES; do
    [ -f "$W/$f/epoch_5.pth" ] || $PY tools/train.py \
        "configs/attacks/badencoder-${f}_resnet18-w16_simclr_1xb256-10e_cifar10.py" \
        --work-dir "$W/$f" --cfg-options $ALL train_cfg.max_epochs=5 train_cfg.val_interval=5 \
        train_dataloader.batch_size=64 encoder_checkpoint="$W/simclr/epoch_3.pth"
done
