# BMAIU on a SimCLR CIFAR ResNet-18 encoder (paper §3.4, Algorithms 1-2).
#   mim train bmaiu_plugin configs/bmaiu_simclr_cifar10.py --cfg-options encoder_checkpoint=PATH
# Stage 1 (epochs 1-5): implant the defender's own random 4x4 trigger toward a reference class;
# stage 2 (epochs 6-25): unlearn it.  Output: the defended encoder's checkpoint and metrics.json
# with BA/ASR/PA of the suspect, implanted and defended encoders and BTS/CCS of stage 1.
_base_ = [
    '../_base_/datasets/cifar10_finetune.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]

# ---- the defense's inputs: the suspect encoder and 10 % of the (unlabeled) training data ----
encoder_checkpoint = None  # required: --cfg-options encoder_checkpoint=PATH
implant_epochs = 5
unlearn_epochs = 20

model = dict(
    type='BMAIU',
    backbone=dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='BN')),
    encoder_checkpoint=encoder_checkpoint,
    # the defender's custom trigger: a seeded random 4x4 patch, new random position per sample
    custom_trigger=dict(type='PatchTrigger', size=4, pattern='random', position='random',
                        seed=2025),
    # R: a class drawn at random from the defense data ('kmeans' for label-free data)
    reference=dict(mode='random_class', num=10),
    u1=1., u2=10., u3=1., u0=1.,  # u0: stage 2 clean consistency (0 = Table 8 ablation)
    reference_anchor=1.,
    implant_target='suspect',
    repulsion='cosine',           # 'cosine' | 'hinge' | 'squared'
    repulsion_anchor='teacher',   # 'student' (paper: f2(t)) | 'student_detached' | 'teacher'
    trigger_fraction=1.,
    freeze_bn=True,
    img_size=32,
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    seed=0)

optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=implant_epochs + unlearn_epochs,
                 val_interval=implant_epochs + unlearn_epochs)
custom_hooks = [
    dict(type='ReferenceSetHook'),
    dict(type='BMAIUStageHook', implant_epochs=implant_epochs),
    # off by default; with model.trigger_search set, interval=N re-searches the custom pattern
    # on the encoder being unlearned every N epochs of stage 2 (docs/bmaiu.md)
    dict(type='CustomTriggerSearchHook', interval=None),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=1))

# ---- EVALUATOR ONLY: the attacker's trigger, used by the probe, never seen by the defense ----
# one of 'badencoder', 'estas', 'sslbackdoor', 'ctrl', 'multitarget' (or a list)
evaluate_attack = 'badencoder'
