#!/usr/bin/env bash
# Trigger-family battery, attack side, at the quickstart's scale: a w16 SimCLR encoder (3 epochs
# on 20,000 training images, BA about 36) and BadEncoder's fine-tuning (5 epochs on 10 % shadow
# data, batch 64, lr 0.01) with each family's trigger; probe on 5,000 training / 2,000 test images.
#   bash projects/trigger_battery/run_w16.sh [FAMILY ...]     # default: every family
#   EPOCHS=10 bash projects/trigger_battery/run_w16.sh warp ctrl   # the w16 config's 10 epochs
# Families: patch4 patch14 blend warp ctrl (configs/attacks/badencoder-<family>_*).  The clean
# encoder's probe reports every family's ASR; each attack's work dir has its own metrics.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
W=${WORK:-work_dirs/w16_families}
FAMILIES=${*:-patch4 patch14 blend warp ctrl}
EPOCHS=${EPOCHS:-5}
ALL="val_cfg.probe_dataloader.dataset.indices=5000 test_cfg.probe_dataloader.dataset.indices=5000
 val_dataloader.dataset.indices=2000 test_dataloader.dataset.indices=2000"
presets=$(printf 'badencoder-%s,' $FAMILIES)
[ -f "$W/simclr/epoch_3.pth" ] || $PY tools/train.py \
    configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py --work-dir "$W/simclr" \
    --cfg-options $ALL train_cfg.max_epochs=3 train_cfg.val_interval=3 param_scheduler.1.T_max=2 \
    param_scheduler.1.end=3 train_dataloader.dataset.indices=20000 \
    "evaluate_attack=[${presets%,}]"
for f in $FAMILIES; do
    dir=$W/$f; [ "$EPOCHS" = 5 ] || dir=$W/$f-${EPOCHS}e
    [ -f "$dir/epoch_$EPOCHS.pth" ] || $PY tools/train.py \
        "configs/attacks/badencoder-${f}_resnet18-w16_simclr_1xb256-10e_cifar10.py" \
        --work-dir "$dir" --cfg-options $ALL train_cfg.max_epochs=$EPOCHS \
        train_cfg.val_interval=$EPOCHS train_dataloader.batch_size=64 \
        default_hooks.checkpoint.interval=$EPOCHS encoder_checkpoint="$W/simclr/epoch_3.pth"
done
