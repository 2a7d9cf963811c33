# SimCLR, CIFAR ResNet-18, the paper's recipe: 500 epochs, batch 512, lr 0.06 (SGD, cosine).
# Probe (BA) at the end of training.  `mim train bmaiu_plugin <this file>`.
_base_ = [
    '../_base_/models/simclr_resnet18_cifar.py',
    '../_base_/datasets/cifar10_ssl.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/schedules/cifar10_sgd_coslr.py',
    '../_base_/default_runtime.py',
]
