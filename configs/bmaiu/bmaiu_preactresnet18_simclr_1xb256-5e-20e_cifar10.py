# BMAIU on a SimCLR / BYOL / MoCo v2 PreAct ResNet-18 encoder: the paper's recipe of
# ../bmaiu_simclr_cifar10.py (5 implant + 20 unlearning epochs) with the backbone swapped.
_base_ = ['../bmaiu_simclr_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
