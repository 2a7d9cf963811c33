# SimCLR on CIFAR-10 with a CIFAR ResNet-34 (mmpretrain's ResNet_CIFAR,
# depth 34: 3x3 stride-1 stem, no max-pool, 4x4x512 output on 32x32 images).
# Table 7 (architecture study): the main recipe of
# ../selfsup/simclr_resnet18_1xb512-coslr-500e_cifar10.py (500 epochs, batch 512, SGD lr 0.06,
# cosine; projection 512-512-128, T 0.5) with the backbone swapped.  Probe (BA) at the end.
# `mim train bmaiu_plugin <this file>`.
_base_ = ['../selfsup/simclr_resnet18_1xb512-coslr-500e_cifar10.py']

model = dict(
    backbone=dict(type='ResNet_CIFAR', depth=34),
    neck=dict(in_channels=512))
