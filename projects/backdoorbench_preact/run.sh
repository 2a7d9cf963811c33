#!/usr/bin/env bash
# PreAct ResNet-18 end to end at CPU scale: SimCLR -> BadEncoder -> BackdoorBench records ->
# BackdoorBench's loading procedure (`backdoorbench verify`).  The figures of
# docs/backdoorbench.md ("Checked on real CIFAR-10") come from this script.
#   bash projects/backdoorbench_preact/run.sh            # WORK=work_dirs/bb_preact by default
# About 50 minutes on a shared 2-core CPU.  Existing work dirs are reused (delete them to start over).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-work_dirs/bb_preact}
DATA=${BMAIU_DATA_ROOT:-data/cifar10}
export BMAIU_DATA_ROOT=$DATA

# 1. a clean SimCLR encoder: 4,000 training images, 2 epochs, batch 128 (lr 0.06, 1 warm-up
#    epoch); its end-of-training probe uses 2,000 training and 1,000 test images
if [ ! -f "$WORK/simclr/epoch_2.pth" ]; then
    $PY tools/train.py configs/selfsup/simclr_preactresnet18_1xb512-coslr-500e_cifar10.py \
        --work-dir "$WORK/simclr" --cfg-options train_dataloader.batch_size=128 \
        train_dataloader.num_workers=2 train_dataloader.dataset.indices=4000 \
        train_cfg.max_epochs=2 train_cfg.val_interval=2 \
        param_scheduler.0.start_factor=0.1 param_scheduler.0.end=1 \
        param_scheduler.1.T_max=1 param_scheduler.1.begin=1 param_scheduler.1.end=2 \
        default_hooks.checkpoint.interval=1 \
        val_cfg.probe_dataloader.dataset.indices=2000 val_dataloader.dataset.indices=1000
fi
CLEAN=$WORK/simclr/epoch_2.pth

# 2. BadEncoder on it: 3 % shadow data (1,500 images), batch 64, 5 epochs; its probe uses
#    5,000 training and 2,000 test images
if [ ! -f "$WORK/badencoder/epoch_5.pth" ]; then
    $PY tools/train.py configs/attacks/badencoder_preactresnet18_simclr_1xb256-20e_cifar10.py \
        --work-dir "$WORK/badencoder" --cfg-options encoder_checkpoint="$CLEAN" \
        train_dataloader.dataset.ratio=0.03 train_dataloader.batch_size=64 \
        train_cfg.max_epochs=5 train_cfg.val_interval=5 \
        val_cfg.probe_dataloader.dataset.indices=5000 val_dataloader.dataset.indices=2000
fi

# 3. both encoders as BackdoorBench records (probe on 5,000 training images, the first 2,000
#    test images), then loaded and scored the way BackdoorBench does
for enc in clean:$CLEAN badencoder:$WORK/badencoder/epoch_5.pth; do
    name=${enc%%:*}
    $PY tools/backdoorbench.py export "${enc#*:}" --out-root "$WORK/bb" --name "$name" \
        --attack badencoder --probe-train-size 5000 --num-test 2000 --data-root "$DATA" --force
    $PY tools/backdoorbench.py verify "$WORK/bb/record/$name" --data-root "$DATA"
done
