# SimCLR on CIFAR-10 with a CIFAR VGG-11 (VGG_CIFAR, depth 11): conv-BN-ReLU
# stages closed by max-pools, 1x1x512 output on 32x32 images.
# Table 7 (architecture study): the main recipe of
# ../selfsup/simclr_resnet18_1xb512-coslr-500e_cifar10.py (500 epochs, batch 512, SGD lr 0.06,
# cosine; projection 512-512-128, T 0.5) with the backbone swapped.  Probe (BA) at the end.
# `mim train bmaiu_plugin <this file>`.
_base_ = ['../selfsup/simclr_resnet18_1xb512-coslr-500e_cifar10.py']

model = dict(
    backbone=dict(_delete_=True, type='VGG_CIFAR', depth=11, base_channels=64,
                  norm_cfg=dict(type='BN')),
    neck=dict(in_channels=512))
