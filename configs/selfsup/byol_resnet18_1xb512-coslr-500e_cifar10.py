# BYOL, CIFAR ResNet-18: 500 epochs, batch 512, SGD lr 0.06 (cosine), the SimCLR schedule of the
# paper (BYOL trains stably with plain SGD at this scale; no LARS).  Probe (BA) at the end.
# `mim train bmaiu_plugin <this file>`.
_base_ = [
    '../_base_/models/byol_resnet18_cifar.py',
    '../_base_/datasets/cifar10_ssl.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/schedules/cifar10_sgd_coslr.py',
    '../_base_/default_runtime.py',
]
