#!/usr/bin/env bash
# The CPU-scale study of docs/results.md: clean SimCLR encoder -> BadEncoder -> BMAIU (and its
# ablation), width-16 CIFAR ResNet-18 on real CIFAR-10 (offline copy), 2 CPU cores.
#
# usage: bash tools/analysis/cpu_study.sh STEP [ARGS]
#   pretrain              SimCLR w16 (configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py)
#   probe_clean           BA / BadEncoder-trigger ASR of the clean encoder
#   badencoder            attack the clean encoder (10 % shadow data, 10 epochs)
#   bmaiu VARIANT         defend the BadEncoder encoder; VARIANT is one of the ablation rows below
#   table                 collect every metrics.json into $ROOT/results.md
# env: ROOT (default work_dirs/cpu_study), CLEAN (clean encoder checkpoint; default
#      $ROOT/simclr/epoch_$CLEAN_EPOCH.pth), CLEAN_EPOCH (default 8), PY (default python).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-work_dirs/cpu_study}
PY=${PY:-python}
CLEAN_EPOCH=${CLEAN_EPOCH:-8}
CLEAN=${CLEAN:-$ROOT/simclr/epoch_$CLEAN_EPOCH.pth}
ATTACKED=$ROOT/badencoder/epoch_10.pth
BMAIU_CFG=configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py

# ablation rows: name -> extra --cfg-options
declare -A VARIANTS=(
  [default]=""
  [paper_anchor]="model.implant_target=student model.repulsion_anchor=student"
  [bn_updated]="model.freeze_bn=False"
  [lr0.05]="optim_wrapper.optimizer.lr=0.05"
  [trigger8]="model.custom_trigger.size=8"
  [no_repulsion]="model.u3=0.0"
  [kmeans_ref]="model.reference.mode=kmeans"
  [unlearn_only]="implant_epochs=0 custom_hooks.1.implant_epochs=0 train_cfg.max_epochs=20 train_cfg.val_interval=20"
  [oracle_ref_truck]="model.reference.mode=class model.reference.class_index=9"
)

step=${1:-}
case "$step" in
  pretrain)
    $PY tools/train.py configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py \
        --work-dir "$ROOT/simclr" ;;
  probe_clean)
    $PY tools/test.py configs/eval/probe_resnet18-w16_cifar10.py "$CLEAN" \
        --work-dir "$ROOT/clean_probe" --cfg-options evaluate_attack=badencoder ;;
  badencoder)
    $PY tools/train.py configs/attacks/badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py \
        --work-dir "$ROOT/badencoder" --cfg-options encoder_checkpoint="$CLEAN" ;;
  bmaiu)
    v=${2:?variant}; [ -n "${VARIANTS[$v]+x}" ] || { echo "unknown variant $v: ${!VARIANTS[*]}"; exit 2; }
    # shellcheck disable=SC2086
    $PY tools/train.py "$BMAIU_CFG" --work-dir "$ROOT/bmaiu_$v" \
        --cfg-options encoder_checkpoint="$ATTACKED" ${VARIANTS[$v]} ;;
  table)
    runs=("clean=$ROOT/clean_probe" "badencoder=$ROOT/badencoder")
    for v in default paper_anchor bn_updated lr0.05 trigger8 no_repulsion kmeans_ref unlearn_only oracle_ref_truck; do
      [ -f "$ROOT/bmaiu_$v/metrics.json" ] && runs+=("bmaiu_$v=$ROOT/bmaiu_$v")
    done
    $PY tools/analysis/collect_metrics.py "${runs[@]}" --out "$ROOT/results.md" ;;
  *) sed -n 2,14p "$0"; exit 2 ;;
esac
