# DECREE's PL1 on a PreAct ResNet-18 encoder; see decree_resnet18_cifar10.py.
_base_ = ['./decree_resnet18_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
