# The encoder of the attack, defense and probe configs: mmpretrain's CIFAR ResNet-18
# (`ResNet_CIFAR`: 3x3 stride-1 stem, no max-pool, 512-d features on 32x32 images) and the
# CIFAR-10 pixel normalization its features are computed under.  Any SimCLR / BYOL / MoCo v2
# CIFAR ResNet-18 checkpoint fits (the backbone is the same); width 16 is
# `model.backbone.stem_channels=16, model.backbone.base_channels=16` (128-d features).
_base_ = ['../datasets/cifar10_mean_std.py']
model = dict(
    backbone=dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='BN')),
    mean={{_base_.cifar10_mean}},
    std={{_base_.cifar10_std}})
