# SimCLR on CIFAR-10 with PreAct ResNet-18 (`PreActResNet`, He et al., ECCV 2016), the default
# model of BackdoorBench: the recipe of simclr_resnet18_1xb512-coslr-500e_cifar10.py with the
# backbone swapped.  Its encoders export as BackdoorBench `preactresnet18` records
# (docs/backdoorbench.md).  `mim train bmaiu_plugin <this file>`.
_base_ = ['./simclr_resnet18_1xb512-coslr-500e_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
