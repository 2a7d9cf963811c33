# CLP on a PreAct ResNet-18 encoder (u = 3); see clp_resnet18_u3_cifar10.py.  In a
# pre-activation network each BN follows the sum of a convolution and its shortcut; CLP pairs
# it with the last convolution before it, as its official code does on any network.
_base_ = ['./clp_resnet18_u3_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
