# MoCo v2 on CIFAR-10 with PreAct ResNet-18 (BackdoorBench's `preactresnet18`): the recipe of
# mocov2_resnet18_1xb512-coslr-500e_cifar10.py with the backbone swapped.
_base_ = ['./mocov2_resnet18_1xb512-coslr-500e_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
