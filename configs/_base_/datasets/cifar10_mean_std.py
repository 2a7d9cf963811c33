# CIFAR-10 per-channel pixel mean / std of the training split, RGB order, 0-255 scale.
# The one definition: the SSL data preprocessor (cifar10_ssl.py) and the encoder bases
# (../models/resnet18_cifar.py) read it as {{_base_.cifar10_mean}} / {{_base_.cifar10_std}}.
cifar10_mean = [125.307, 122.961, 113.8575]
cifar10_std = [51.5865, 50.847, 51.255]
