# BadEncoder (Jia et al., S&P 2022; github.com/jinyuan-jia/BadEncoder, badencoder.py) on a clean
# SimCLR CIFAR ResNet-18 encoder.  Loss and recipe: docs/methods.md, "BadEncoder".
#   mim train bmaiu_plugin configs/attacks/badencoder_resnet18_simclr_1xb256-20e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
# Shadow data: 10 % of the training set (BadEncoder uses all 50k; ratio=1.0 for that).
# Trigger: 10x10 white square at rows/cols 21-30; target: truck (class 9), one reference image.
_base_ = [
    '../_base_/models/resnet18_cifar.py',
    '../_base_/datasets/cifar10_finetune.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]
encoder_checkpoint = None  # required
max_epochs = 20
model = dict(
    type='BadEncoder',
    encoder_checkpoint=encoder_checkpoint,
    targets=[dict(trigger=dict(type='PatchTrigger', size=10, pattern='white', position=(21, 21)),
                  reference=dict(mode='class', class_index=9, num=1))],
    lambda1=1., lambda2=1., freeze_bn=True, seed=100)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = [dict(type='PrepareModelHook')]  # picks the reference images from the shadow data
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=1))
# the attacker knows its trigger: the evaluator reports its ASR
evaluate_attack = 'badencoder'
