#!/usr/bin/env bash
# The CPU-scale study of docs/results.md: clean SimCLR encoder -> BadEncoder -> BMAIU (and its
# ablation), width-16 CIFAR ResNet-18 on real CIFAR-10, 2 CPU cores (projects/cpu_study/README.md).
#
# usage: bash projects/cpu_study/cpu_study.sh STEP [ARGS]
#   pretrain              SimCLR w16 (configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py)
#   probe_clean           BA / BadEncoder-trigger ASR of the clean encoder
#   probe_clean_all       the same with every attack's trigger (the clean row of the attack table)
#   badencoder            attack the clean encoder (10 % shadow data, 10 epochs)
#   estas                 the ESTAS reconstruction on the clean encoder (10 % shadow data, 10 epochs)
#   bmaiu VARIANT         defend the BadEncoder encoder with BMAIUAblation; VARIANT is one of the
#                         ablation rows below, at the ablation budget: 5 % defense data, 3 implant
#                         + 10 unlearn epochs
#   bmaiu_full VARIANT    the same at the paper's budget: 10 % data, 5 + 20 epochs
#   searched_trigger          the searched-trigger unlearning recipe as is ($SEARCHED_TRIGGER_CFG)
#   multitarget [N]       the multi-target BadEncoder (paper section 3.2) on the clean encoder
#                         (10 % shadow data, 10 epochs, batch 64): N=10 HTBA triggers, three
#                         sampled per step (default), or N=4, all four in every step
#   implant_check [N]     per target of the N-trigger multi-target encoder (default 10): does its
#                         trigger reach its reference, and does the probe put the reference in
#                         the target class (tools/implant_check.py)
#   observe VARIANT       the observation study on the 4-trigger encoder: unlearn ONE trigger
#                         (stage 2 of BMAIU alone, 5 % data, 10 epochs) and report all ASRs and
#                         BA; VARIANT: AT0..AT3 (genuine trigger i, paper Table 2) or custom
#                         (BMAIU both stages with the long_implant_trigger8 settings)
#   f1 RUN                take the implanted encoder f1 (the stage-2 teacher) out of bmaiu_RUN's
#                         last checkpoint into $ROOT/f1_RUN.pth
#   joint                 the diagnostic attack that implants BadEncoder's square and the 8x8
#                         custom trigger jointly; then $ROOT/f1_joint_trigger8.pth for `unlearn`
#   unlearn F1RUN VARIANT stage 2 alone (10 epochs, batch 64, 5 % data) from $ROOT/f1_F1RUN.pth,
#                         with the stage-2 VARIANTS below: the "suspect" it reports is f1
#   defense NAME          a baseline on $ATTACKED (evaluated for $EVAL where noted): clp,
#                         sslcleanse, ibau, ibau_short (5 % data, 2 rounds), or decree_clean /
#                         decree_badencoder / decree_bmaiu (PL1)
#   poison_long ATTACK    a long poisoned pretraining (ATTACK: sslbackdoor or ctrl; or clean, the
#                         same run unpoisoned): SimCLR w16 for $POISON_EPOCHS (default 30) epochs
#                         on the first $POISON_IMAGES (default 10,000) training images, a fraction
#                         $POISON_RATE (default 0.5) of their class 0 poisoned (CTRL's own rate is
#                         1 % of the set); a checkpoint every third of the run (mid-run probes).
#                         Work dir poison_long_ATTACK, or poison_long${POISON_TAG}_ATTACK.
#   table                 collect every metrics.json into $ROOT/results.md
# env: ROOT (default work_dirs/cpu_study), CLEAN (clean encoder checkpoint; default
#      $ROOT/simclr/epoch_$CLEAN_EPOCH.pth), CLEAN_EPOCH (default 8), PY (default python),
#      ATTACKED / EVAL / SUFFIX (the suspect of the bmaiu and defense steps, see below).
# A missing input (checkpoint, config, argument) ends in one `error:` line and exit status 2.
set -euo pipefail
cd "$(dirname "$0")/../.."   # the repo root: every path below is relative to it

# ---- where the study's inputs live ------------------------------------------------------------
STUDY=projects/cpu_study
# configs only this study uses (looked up there first, then in configs/attacks)
STUDY_CONFIGS=$STUDY/configs
# the BMAIU config every ablation row starts from, and the module registering BMAIUAblation
BMAIU_CFG=configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py
ABLATION_MODULE=projects.cpu_study.bmaiu_ablation
# the searched-trigger unlearning recipe (the registered SearchedTriggerUnlearning defense)
SEARCHED_TRIGGER_CFG=configs/searched_trigger/searched-trigger_resnet18-w16_1xb64-10e_cifar10.py

# ---- runs -------------------------------------------------------------------------------------
ROOT=${ROOT:-work_dirs/cpu_study}
PY=${PY:-python}
CLEAN_EPOCH=${CLEAN_EPOCH:-8}
CLEAN=${CLEAN:-$ROOT/simclr/epoch_$CLEAN_EPOCH.pth}
# the suspect of the bmaiu steps, and the attack its evaluator knows (e.g. ATTACKED=$ROOT/estas/
# epoch_10.pth EVAL=estas: the run's work dir then gets the suffix _estas, or $SUFFIX if set)
ATTACKED=${ATTACKED:-$ROOT/badencoder/epoch_10.pth}
EVAL=${EVAL:-badencoder}
if [ -z "${SUFFIX+x}" ]; then SUFFIX=""; [ "$EVAL" = badencoder ] || SUFFIX=_$EVAL; fi
MULTI=$ROOT/multitarget4/epoch_10.pth
# BMAIUAblation (BMAIU with the ablation options) for every BMAIU row; the repo root on the path
# so that the module imports
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BMAIU_ABLATION="model.type=BMAIUAblation custom_imports.imports=[$ABLATION_MODULE]
                custom_imports.allow_failed_imports=False"

die() { echo "error: $*" >&2; exit 2; }
# need FILE WHAT: refuse when an input file is missing
need() { [ -f "$1" ] || die "$2 not found: $1"; }
# study_cfg NAME: the study's own config, else the package's attack config of that name
study_cfg() {
  local c
  for c in "$STUDY_CONFIGS/$1" "configs/attacks/$1"; do [ -f "$c" ] && { echo "$c"; return; }; done
  die "config $1 not found in $STUDY_CONFIGS/ or configs/attacks/"
}
# searched_trigger_hook_cfg N: $BMAIU_CFG with a third custom hook re-searching the custom pattern
# every N epochs (a list entry --cfg-options cannot append), written once under $ROOT/configs
searched_trigger_hook_cfg() {
  local out=$ROOT/configs/bmaiu_research-every-$1.py
  mkdir -p "$ROOT/configs"
  [ -f "$out" ] || cat > "$out" <<EOF
# written by $STUDY/cpu_study.sh: $BMAIU_CFG, its custom pattern re-searched every $1 epochs
_base_ = ['$PWD/$BMAIU_CFG']
custom_hooks = [
    dict(type='PrepareModelHook'),
    dict(type='BMAIUStageHook', implant_epochs={{_base_.implant_epochs}}),
    dict(type='TriggerSearchHook', interval=$1),
]
EOF
  echo "$out"
}
# names NAME: the sorted keys of the associative array NAME, on one line
names() { local -n a=$1; printf '%s\n' "${!a[@]}" | sort | paste -sd ' '; }
# arg VALUE WHAT: refuse a missing positional argument
arg() {
  [ -n "$1" ] || die "$STEP needs $2 (bash $STUDY/cpu_study.sh with no step lists the steps)"
  echo "$1"
}

# the ablation budget (a BMAIU run at the paper's 10 % / 5+20 epochs takes ~25 min on 2 cores)
ABLATION_BUDGET="train_dataloader.dataset.ratio=0.05 implant_epochs=3 custom_hooks.1.implant_epochs=3
                 train_cfg.max_epochs=13 train_cfg.val_interval=13"

# a stage 1 with 10x the default budget: 8 epochs at batch 64 (320 steps), lr 0.05, u1 = 5
STRONG="train_dataloader.batch_size=64 optim_wrapper.optimizer.lr=0.05 model.u1=5.0
        implant_epochs=8 custom_hooks.1.implant_epochs=8 train_cfg.max_epochs=14
        train_cfg.val_interval=14"
# a stage 1 of 20 epochs at batch 64 (800 steps: the budget of stage 2, with the implanted ASR
# checked before unlearning), then 10 unlearning epochs at batch 64
LONG="train_dataloader.batch_size=64 implant_epochs=20 custom_hooks.1.implant_epochs=20
      train_cfg.max_epochs=30 train_cfg.val_interval=30"
# the custom trigger as a family: a new random pattern, side (3-10) and position per image
FAMILY="model.custom_trigger._delete_=True model.custom_trigger.type=RandomPatchFamily
        model.custom_trigger.sizes=[3,10]"
# the custom trigger's pattern searched on the suspect before stage 1 (label-free, blind to the
# attack: bmaiu_plugin/defenses/trigger_search.py): the 8x8 patch it reacts to most
SEARCH="model.trigger_search.steps=300 model.trigger_search.lr=0.1
        model.trigger_search.batch_size=128"
# stage 2 alone (no implant), 10 unlearning epochs: the base of the *_unlearn_only rows
UNLEARN10="custom_hooks.1.implant_epochs=0 train_cfg.max_epochs=10 train_cfg.val_interval=10"
# ablation rows: name -> extra --cfg-options
declare -A VARIANTS=(
  [default]=""
  [paper_anchor]="model.implant_target=student model.repulsion_anchor=student"
  [bn_updated]="model.freeze_bn=False"
  [lr0.05]="optim_wrapper.optimizer.lr=0.05"
  [trigger8]="model.custom_trigger.size=8"
  [no_repulsion]="model.u3=0.0"
  [kmeans_ref]="model.reference.mode=kmeans"
  [unlearn_only]="$UNLEARN10"
  [centered]="model.center_features=True"
  [centered_lr0.05]="model.center_features=True optim_wrapper.optimizer.lr=0.05"
  [bs64]="train_dataloader.batch_size=64"
  [centered_bs64]="model.center_features=True train_dataloader.batch_size=64"
  [fixed_pos4]="model.custom_trigger.position=[2,2] train_dataloader.batch_size=64"
  [fixed_pos10]="model.custom_trigger.position=[2,2] model.custom_trigger.size=10 train_dataloader.batch_size=64"
  [oracle_ref_truck]="model.reference.mode=class model.reference.class_index=9"
  [strong_implant]="$STRONG"
  [long_implant]="$LONG"
  [long_implant_trigger8]="$LONG model.custom_trigger.size=8"
  [fixed_br_unlearn_only]="$UNLEARN10 model.custom_trigger.size=8
                           model.custom_trigger.position=[23,23]"
  [fixed_tl_unlearn_only]="$UNLEARN10 model.custom_trigger.size=8
                           model.custom_trigger.position=[2,2]"
  [family_unlearn_only]="$UNLEARN10 train_dataloader.batch_size=64 $FAMILY"
  # stage 1 may change only the early blocks, stage 2 only the late ones: the implant has to
  # route the custom trigger through the suspect's existing late-layer pathways, and unlearning
  # has to act on those pathways instead of undoing the implant's early-layer changes
  [implant_early_unlearn_late]="$LONG model.custom_trigger.size=8
                                model.implant_blocks=[conv1,layer1,layer2]
                                model.unlearn_blocks=[layer3,layer4]"
  # mechanism check (not a defense: white is the attacker's pattern): stage 2 alone with a
  # white 10x10 patch at random positions, which the suspect already reacts to
  [white10_unlearn_only]="$UNLEARN10 train_dataloader.batch_size=64
                          model.custom_trigger.pattern=white model.custom_trigger.size=10"
  [searched8_unlearn_only]="$UNLEARN10 train_dataloader.batch_size=64 $SEARCH
                            model.custom_trigger.size=8"
  [searched10_unlearn_only]="$UNLEARN10 train_dataloader.batch_size=64 $SEARCH
                             model.custom_trigger.size=10"
  # the same, and the pattern re-searched on the encoder being unlearned every 2 (1) epochs
  # (TriggerSearchHook, see RESEARCH_EVERY; 100-step warm-started searches)
  [searched10_adv_unlearn_only]="$UNLEARN10 train_dataloader.batch_size=64 $SEARCH
                                 model.custom_trigger.size=10
                                 model.trigger_search.restarts_steps=100"
  [searched10_adv1_unlearn_only]="$UNLEARN10 train_dataloader.batch_size=64 $SEARCH
                                  model.custom_trigger.size=10
                                  model.trigger_search.restarts_steps=100"
  [searched8_long]="$LONG $SEARCH model.custom_trigger.size=8"
  # both stages (3 implant + 10 unlearning epochs at batch 64) with the searched 10x10 pattern
  [searched10]="train_dataloader.batch_size=64 $SEARCH model.custom_trigger.size=10"
  [strong_implant_oracle_ref]="$STRONG model.reference.mode=class model.reference.class_index=9"
)
# rows whose custom pattern is re-searched during stage 2: name -> every N epochs.  They train
# from a config derived from $BMAIU_CFG with a TriggerSearchHook(interval=N) (searched_trigger_hook_cfg)
declare -A RESEARCH_EVERY=([searched10_adv_unlearn_only]=2 [searched10_adv1_unlearn_only]=1)

# stage-2 rows (from an implanted f1; the custom trigger must be f1's: size 8 for trigger8 runs)
STAGE2="train_dataloader.batch_size=64 implant_epochs=0 custom_hooks.1.implant_epochs=0
        train_cfg.max_epochs=10 train_cfg.val_interval=10"
declare -A UNLEARN=(
  [default]=""
  [family]="$FAMILY"
  [no_repulsion]="model.u3=0.0"
  [squared]="model.repulsion=squared"
  [u2only]="model.u3=0.0 model.u0=0.0"
  [lr0.001]="optim_wrapper.optimizer.lr=0.001"
  # which blocks stage 2 may change (the others keep f1's weights)
  [late]="model.unlearn_blocks=[layer3,layer4]"
  [early]="model.unlearn_blocks=[conv1,layer1,layer2]"
)

STEP=${1:-}
case "$STEP" in
  pretrain)
    $PY tools/train.py configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py \
        --work-dir "$ROOT/simclr" ;;
  probe_clean)
    need "$CLEAN" "clean encoder (run the pretrain step, or set CLEAN)"
    $PY tools/test.py configs/eval/probe_resnet18-w16_cifar10.py "$CLEAN" \
        --work-dir "$ROOT/clean_probe" --cfg-options evaluate_attack=badencoder ;;
  probe_clean_all)
    need "$CLEAN" "clean encoder (run the pretrain step, or set CLEAN)"
    $PY tools/test.py configs/eval/probe_resnet18-w16_cifar10.py "$CLEAN" \
        --work-dir "$ROOT/clean_probe_all" \
        --cfg-options "evaluate_attack=[badencoder,estas,sslbackdoor,ctrl]" ;;
  badencoder)
    need "$CLEAN" "clean encoder (run the pretrain step, or set CLEAN)"
    $PY tools/train.py configs/attacks/badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py \
        --work-dir "$ROOT/badencoder" --cfg-options encoder_checkpoint="$CLEAN" ;;
  bmaiu|bmaiu_full)
    v=$(arg "${2:-}" "a variant: $(names VARIANTS)")
    [ -n "${VARIANTS[$v]+x}" ] || die "unknown variant $v: $(names VARIANTS)"
    need "$ATTACKED" "suspect encoder (run the badencoder step, or set ATTACKED)"
    budget=$ABLATION_BUDGET; name=bmaiu_$v$SUFFIX
    [ "$STEP" = bmaiu_full ] && { budget=""; name=bmaiufull_$v$SUFFIX; }
    cfg=$BMAIU_CFG
    [ -z "${RESEARCH_EVERY[$v]+x}" ] || cfg=$(searched_trigger_hook_cfg "${RESEARCH_EVERY[$v]}")
    # shellcheck disable=SC2086
    $PY tools/train.py "$cfg" --work-dir "$ROOT/$name" \
        --cfg-options $BMAIU_ABLATION encoder_checkpoint="$ATTACKED" evaluate_attack="$EVAL" \
        $budget ${VARIANTS[$v]} ;;
  estas)
    need "$CLEAN" "clean encoder (run the pretrain step, or set CLEAN)"
    $PY tools/train.py configs/attacks/estas_resnet18-w16_simclr_1xb256-10e_cifar10.py \
        --work-dir "$ROOT/estas" --cfg-options encoder_checkpoint="$CLEAN" ;;
  searched_trigger)
    need "$SEARCHED_TRIGGER_CFG" "searched-trigger config"
    need "$ATTACKED" "suspect encoder (run the badencoder step, or set ATTACKED)"
    $PY tools/train.py "$SEARCHED_TRIGGER_CFG" --work-dir "$ROOT/searched_trigger$SUFFIX" \
        --cfg-options encoder_checkpoint="$ATTACKED" evaluate_attack="$EVAL" ;;
  multitarget)
    n=${2:-10}; name=multitarget; [ "$n" = 10 ] || name=multitarget$n
    cfg=$(study_cfg "badencoder-${name}_resnet18-w16_simclr_1xb64-10e_cifar10.py")
    need "$CLEAN" "clean encoder (run the pretrain step, or set CLEAN)"
    $PY tools/train.py "$cfg" --work-dir "$ROOT/$name" --cfg-options encoder_checkpoint="$CLEAN" ;;
  implant_check)
    n=${2:-10}; name=multitarget; [ "$n" = 10 ] || name=multitarget$n
    cfg=$(study_cfg "badencoder-${name}_resnet18-w16_simclr_1xb64-10e_cifar10.py")
    need "$CLEAN" "clean encoder (run the pretrain step, or set CLEAN)"
    need "$ROOT/$name/epoch_10.pth" "multi-target encoder (run the step: multitarget $n)"
    $PY "$STUDY/tools/implant_check.py" "$cfg" "$CLEAN" "$ROOT/$name/epoch_10.pth" \
        --out "$ROOT/implant_check_$name.json" ;;
  observe)
    v=$(arg "${2:-}" "a variant: AT0..AT3 or custom")
    case "$v" in
      # the defender is handed the attacker's trigger i (an oracle: the paper's Table 2 set-up)
      AT[0-3]) i=${v#AT}
           extra="model.custom_trigger.pattern=data/triggers/htba/trigger_1$i.png
                  model.custom_trigger.size=8 model.custom_trigger.position=[23,23]
                  model.reference.mode=class model.reference.class_index=$i
                  $UNLEARN10" ;;
      # BMAIU with the custom trigger that does implant at this scale (long_implant_trigger8)
      custom) extra="$LONG model.custom_trigger.size=8" ;;
      *) die "unknown observe variant $v (AT0..AT3, custom)" ;;
    esac
    need "$MULTI" "4-trigger encoder (run the step: multitarget 4)"
    # shellcheck disable=SC2086
    $PY tools/train.py "$BMAIU_CFG" --work-dir "$ROOT/observe_$v" \
        --cfg-options $BMAIU_ABLATION encoder_checkpoint="$MULTI" evaluate_attack=multitarget \
        train_dataloader.dataset.ratio=0.05 $extra ;;
  f1)
    r=$(arg "${2:-}" "a bmaiu run name, e.g. long_implant_trigger8")
    last=$({ find "$ROOT/bmaiu_$r" -maxdepth 1 -name 'epoch_*.pth' 2>/dev/null || true; } |
          sort -V | tail -1)
    [ -n "$last" ] || die "no checkpoint in $ROOT/bmaiu_$r (run the step: bmaiu $r)"
    $PY "$STUDY/tools/extract_encoder.py" "$last" --prefix teacher. --out "$ROOT/f1_$r.pth" ;;
  joint)
    cfg=$(study_cfg badencoder-joint-custom_resnet18-w16_simclr_1xb256-10e_cifar10.py)
    need "$CLEAN" "clean encoder (run the pretrain step, or set CLEAN)"
    $PY tools/train.py "$cfg" --work-dir "$ROOT/joint" --cfg-options encoder_checkpoint="$CLEAN"
    $PY "$STUDY/tools/extract_encoder.py" "$ROOT/joint/epoch_10.pth" --prefix backbone. \
        --out "$ROOT/f1_joint_trigger8.pth" ;;
  unlearn)
    r=$(arg "${2:-}" "an f1 run (F1RUN VARIANT)"); v=$(arg "${3:-}" "a variant: $(names UNLEARN)")
    [ -n "${UNLEARN[$v]+x}" ] || die "unknown variant $v: $(names UNLEARN)"
    need "$ROOT/f1_$r.pth" "implanted encoder f1 (run the step: f1 $r)"
    size="model.custom_trigger.size=4"
    case "$r" in *trigger8*) size="model.custom_trigger.size=8" ;; esac
    case "$v" in family*) size="" ;; esac
    # shellcheck disable=SC2086
    $PY tools/train.py "$BMAIU_CFG" --work-dir "$ROOT/unlearn_${r}_$v" \
        --cfg-options $BMAIU_ABLATION encoder_checkpoint="$ROOT/f1_$r.pth" \
        train_dataloader.dataset.ratio=0.05 $size $STAGE2 ${UNLEARN[$v]} ;;
  defense)
    defenses="clp sslcleanse ibau ibau_short decree_clean decree_badencoder decree_bmaiu"
    d=$(arg "${2:-}" "a defense: $defenses")
    case "$d" in
      clp)
        need "$ATTACKED" "suspect encoder (run the badencoder step, or set ATTACKED)"
        $PY tools/test.py configs/defenses/clp_resnet18-w16_u3_cifar10.py "$ATTACKED" \
            --work-dir "$ROOT/defense_clp$SUFFIX" --cfg-options evaluate_attack="$EVAL" ;;
      decree_clean|decree_badencoder|decree_bmaiu)
        enc=$ATTACKED; [ "$d" = decree_clean ] && enc=$CLEAN
        # the BMAIU-defended f2 of the run whose custom trigger implanted (backbone.* of it)
        [ "$d" = decree_bmaiu ] && enc=$ROOT/bmaiu_long_implant_trigger8/epoch_30.pth
        need "$enc" "encoder of $d"
        $PY tools/test.py configs/defenses/decree_resnet18-w16_cifar10.py "$enc" \
            --work-dir "$ROOT/defense_$d" --cfg-options evaluate_attack=badencoder ;;
      sslcleanse|ibau)
        cfg=configs/defenses/sslcleanse_resnet18-w16_1xb256-20e_cifar10.py
        [ "$d" = ibau ] && cfg=configs/defenses/ibau_resnet18-w16_1xb256-5e_cifar10.py
        need "$ATTACKED" "suspect encoder (run the badencoder step, or set ATTACKED)"
        $PY tools/train.py "$cfg" --work-dir "$ROOT/defense_$d" \
            --cfg-options encoder_checkpoint="$ATTACKED" evaluate_attack=badencoder ;;
      ibau_short)  # I-BAU at a budget this CPU manages: 5 % labeled data, 2 rounds
        need "$ATTACKED" "suspect encoder (run the badencoder step, or set ATTACKED)"
        $PY tools/train.py configs/defenses/ibau_resnet18-w16_1xb256-5e_cifar10.py \
            --work-dir "$ROOT/defense_$d$SUFFIX" --cfg-options encoder_checkpoint="$ATTACKED" \
            evaluate_attack="$EVAL" train_dataloader.dataset.ratio=0.05 \
            train_cfg.max_epochs=2 train_cfg.val_interval=2 ;;
      *) die "unknown defense $d: $defenses" ;;
    esac ;;
  poison_long)
    a=$(arg "${2:-}" "an attack: sslbackdoor, ctrl or clean"); e=${POISON_EPOCHS:-30}
    n=${POISON_IMAGES:-10000}; r=${POISON_RATE:-0.5}
    # one warm-up epoch, then the cosine: fewer than 2 epochs has no schedule
    [[ "$e" =~ ^[0-9]+$ ]] && [ "$e" -ge 2 ] || \
        die "POISON_EPOCHS must be an integer of at least 2, got '$e'"
    budget="train_cfg.max_epochs=$e train_cfg.val_interval=$e param_scheduler.1.T_max=$((e - 1))
            param_scheduler.1.end=$e default_hooks.checkpoint.interval=$(( e >= 3 ? e / 3 : 1 ))
            default_hooks.checkpoint.max_keep_ckpts=3"
    case "$a" in
      clean) cfg=configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py
             data="train_dataloader.dataset.indices=$n evaluate_attack=[sslbackdoor,ctrl]" ;;
      sslbackdoor|ctrl) cfg=configs/attacks/${a}_resnet18-w16_simclr_1xb256-coslr-8e_cifar10.py
             data="train_dataloader.dataset.dataset.indices=$n
                   train_dataloader.dataset.rate_of=class train_dataloader.dataset.poison_rate=$r" ;;
      *) die "unknown attack $a: sslbackdoor, ctrl or clean" ;;
    esac
    # shellcheck disable=SC2086
    $PY tools/train.py "$cfg" --work-dir "$ROOT/poison_long${POISON_TAG:-}_$a" \
        --cfg-options $budget $data ;;
  table)
    runs=("clean=$ROOT/clean_probe" "badencoder=$ROOT/badencoder")
    for d in "$ROOT"/bmaiu_* "$ROOT"/bmaiufull_* "$ROOT"/unlearn_* "$ROOT"/observe_* \
             "$ROOT"/defense_* "$ROOT"/multitarget*; do
      [ -f "$d/metrics.json" ] && runs+=("$(basename "$d")=$d")
    done
    $PY "$STUDY/tools/collect_metrics.py" "${runs[@]}" --out "$ROOT/results.md"
    bm=(); for r in "${runs[@]}"; do case "$r" in bmaiu*) bm+=("$r");; esac; done
    [ ${#bm[@]} -eq 0 ] || $PY "$STUDY/tools/collect_metrics.py" "${bm[@]}" \
        --compact badencoder --out "$ROOT/results_bmaiu.md" ;;
  "")
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
  *)
    die "unknown step $STEP (bash $STUDY/cpu_study.sh with no step lists the steps)" ;;
esac
