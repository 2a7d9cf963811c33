# I-BAU on a BYOL CIFAR ResNet-18 encoder: the same backbone as SimCLR's, so the same config.
#   python tools/train.py configs/defenses/ibau_resnet18_byol_1xb256-5e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
_base_ = ['./ibau_resnet18_simclr_1xb256-5e_cifar10.py']
