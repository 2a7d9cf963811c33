# SSL-Cleanse on a PreAct ResNet-18 encoder; see sslcleanse_resnet18_1xb256-20e_cifar10.py.
_base_ = ['./sslcleanse_resnet18_1xb256-20e_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
