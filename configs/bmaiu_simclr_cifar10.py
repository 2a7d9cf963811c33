# BMAIU (Zhang et al., Electronics 2025, §3.4, Algorithms 1-2) on a SimCLR CIFAR ResNet-18
# encoder: the entry point named in the README.
#   mim train bmaiu_plugin configs/bmaiu_simclr_cifar10.py --cfg-options encoder_checkpoint=PATH
# Stage 1 (epochs 1-5): implant the defender's own random 4x4 trigger toward a reference class;
# stage 2 (epochs 6-25): unlearn it.  Output: the defended encoder's checkpoint and metrics.json
# with BA/ASR/PA of the suspect, implanted and defended encoders.  BYOL or MoCo encoders of the
# same backbone work unchanged.  docs/bmaiu.md
_base_ = [
    './_base_/models/resnet18_cifar.py',  # the encoder and the CIFAR-10 mean / std
    './_base_/datasets/cifar10_finetune.py',
    './_base_/datasets/cifar10_probe.py',
    './_base_/default_runtime.py',
]

# ---- the defense's inputs: the suspect encoder and 10 % of the (unlabeled) training data ----
encoder_checkpoint = None  # required: --cfg-options encoder_checkpoint=PATH
implant_epochs = 5
unlearn_epochs = 20

model = dict(
    type='BMAIU',
    encoder_checkpoint=encoder_checkpoint,
    # the defender's custom trigger: a seeded random 4x4 patch, new random position per sample
    custom_trigger=dict(type='PatchTrigger', size=4, pattern='random', position='random',
                        seed=2025),
    # R: a class drawn at random from the defense data ('kmeans' for label-free data)
    reference=dict(mode='random_class', num=10),
    u0=1., u1=1., u2=10., u3=1.,  # u0: stage 2 clean consistency (0 = Table 8 ablation)
    freeze_bn=True,
    img_size=32,
    seed=0)

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=implant_epochs + unlearn_epochs,
                 val_interval=implant_epochs + unlearn_epochs)
custom_hooks = [
    dict(type='PrepareModelHook'),  # chooses R
    dict(type='BMAIUStageHook', implant_epochs=implant_epochs),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=1))

# ---- EVALUATOR ONLY: the attacker's trigger, used by the probe, never seen by the defense ----
# one of 'badencoder', 'estas', 'sslbackdoor', 'ctrl', 'multitarget' (or a list)
evaluate_attack = 'badencoder'
