# Searched-trigger unlearning on a PreAct ResNet-18 encoder: the recipe of
# searched-trigger_resnet18_1xb64-10e_cifar10.py with the backbone swapped.
_base_ = ['./searched-trigger_resnet18_1xb64-10e_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
