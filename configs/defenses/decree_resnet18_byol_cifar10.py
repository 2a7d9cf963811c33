# DECREE on a BYOL CIFAR ResNet-18 encoder: the same backbone as SimCLR's, so the same config.
#   python tools/test.py configs/defenses/decree_resnet18_byol_cifar10.py ENCODER_CKPT
_base_ = ['./decree_resnet18_simclr_cifar10.py']
