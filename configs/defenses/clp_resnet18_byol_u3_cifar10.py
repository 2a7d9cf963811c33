# CLP on a BYOL CIFAR ResNet-18 encoder: the same backbone as SimCLR's, so the same config.
#   python tools/test.py configs/defenses/clp_resnet18_byol_u3_cifar10.py ENCODER_CKPT
_base_ = ['./clp_resnet18_simclr_u3_cifar10.py']
