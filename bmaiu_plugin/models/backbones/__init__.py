"""CIFAR-form backbones for the architecture study (registered into mmpretrain's ``MODELS``).

ResNet-18/34 come from mmpretrain's ``ResNet_CIFAR`` and EfficientNetV2-S from its
``EfficientNetV2``; the two families mmpretrain has no 32x32 form of live here:

* ``VGG_CIFAR``: VGG-11/13/16/19 with BatchNorm, five max-pooled stages, 512-d output.
* ``SENet_CIFAR``: SENet-18/34, ResNet basic blocks with squeeze-and-excitation, 512-d output.
* ``PreActResNet``: PreAct ResNet-18/34 in BackdoorBench's layout (its ``preactresnet18``),
  512-d output; the CIFAR architecture whose encoders export as BackdoorBench records.
"""
from .preact_resnet import PreActBlock, PreActResNet
from .senet_cifar import SEBasicBlock, SELayer, SENet_CIFAR
from .vgg_cifar import VGG_CIFAR

__all__ = ['VGG_CIFAR', 'SENet_CIFAR', 'SEBasicBlock', 'SELayer', 'PreActResNet', 'PreActBlock']
