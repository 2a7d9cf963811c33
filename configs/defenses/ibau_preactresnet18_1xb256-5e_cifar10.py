# I-BAU on a PreAct ResNet-18 encoder + linear head; see ibau_resnet18_1xb256-5e_cifar10.py.
_base_ = ['./ibau_resnet18_1xb256-5e_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
