# MoCo v2, CIFAR ResNet-18: 500 epochs, batch 512, SGD lr 0.06 (cosine), queue 4096, T 0.2.
# Probe (BA) at the end.  `mim train bmaiu_plugin <this file>`.
# The queue length (4096) must stay a multiple of the global batch: change both together.
_base_ = [
    '../_base_/models/mocov2_resnet18_cifar.py',
    '../_base_/datasets/cifar10_ssl.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/schedules/cifar10_sgd_coslr.py',
    '../_base_/default_runtime.py',
]
