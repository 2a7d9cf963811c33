# I-BAU (Zeng et al., ICLR 2022; github.com/YiZeng623/I-BAU, defense.py and hypergrad.py) on a
# CIFAR ResNet-18 encoder + linear head (docs/methods.md, "I-BAU").
# Takes any SimCLR / BYOL / MoCo v2 CIFAR ResNet-18 encoder checkpoint (the backbone is the same).
#   python tools/train.py configs/defenses/ibau_resnet18_1xb256-5e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
# Single process (no --launcher): I-BAU's implicit hypergradient is not a DDP backward.
# Data: a seeded 10 % of the CIFAR-10 training split WITH labels (the BMAIU paper gives I-BAU
# 10 %; BackdoorBench uses 5 %: train_dataloader.dataset.ratio=0.05).  A linear head is fit on
# the suspect's clean features first; then each epoch is one I-BAU round ("5e" = BackdoorBench's
# 5 rounds): the universal perturbation (SGD lr 10, one pass, l2 1e-3), then one implicit-
# hypergradient step per batch (K = 5, inner step 0.1, delta on int(0.01 * 256) = 2 images per
# batch) on every encoder and head parameter with Adam lr 1e-4 (BackdoorBench; the original
# defense.py: 1e-3, batch 100).  BN statistics stay frozen (eval mode), as the original.
# Outputs: metrics.json with `ibau_head` (the I-BAU classifier's own BA/ASR/PA),
# `ibau_head_suspect` (the head on the suspect, before unlearning), `suspect` / `defended`
# (fresh probes), `ibau` (per-round loss, |delta|, time); defended_encoder.pth; epoch_5.pth.
_base_ = [
    '../_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_finetune.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]

# ---- the defense's inputs: the suspect encoder and 10 % of the LABELED training data ----
encoder_checkpoint = None  # required: --cfg-options encoder_checkpoint=PATH
rounds = 5

model = dict(
    type='IBAUDefense',
    encoder_checkpoint=encoder_checkpoint,
    num_classes=10,
    head=dict(epochs=10, batch_size=64, lr=0.1),  # the evaluator's probe recipe
    K=5, inner_lr=0.1, pert_lr=10., l2_weight=1e-3, portion=0.01,
    seed=0)
train_dataloader = dict(batch_size=256)
# DECREE's PL1 of every probed encoder (off; val_cfg.pl1.enable=True, test_cfg.pl1.enable=True):
# the original's CIFAR budget (10 % of each test class, up to 1000 epochs of batch 128)
val_cfg = dict(pl1=dict(enable=False, shadow_ratio=0.1, batch_size=128, max_steps=None))
test_cfg = dict(pl1=dict(enable=False, shadow_ratio=0.1, batch_size=128, max_steps=None))

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=rounds, val_interval=rounds)
custom_hooks = [
    dict(type='IBAUHook'),
    dict(type='SaveDefendedEncoderHook', filename='defended_encoder.pth'),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=rounds, max_keep_ckpts=1),
                     logger=dict(type='LoggerHook', interval=5))

# ---- EVALUATOR ONLY: the attacker's trigger, used by the probe, never seen by the defense ----
# one of 'badencoder', 'estas', 'sslbackdoor', 'ctrl', 'multitarget' (or a list)
evaluate_attack = 'badencoder'
