# Entry point named in the README: BMAIU on a SimCLR CIFAR-10 ResNet-18 encoder.
#   mim train bmaiu_plugin configs/bmaiu_simclr_cifar10.py --cfg-options encoder_checkpoint=PATH
# Same as bmaiu/bmaiu_resnet18_simclr_1xb256-5e-20e_cifar10.py.
_base_ = ['./bmaiu/bmaiu_resnet18_simclr_1xb256-5e-20e_cifar10.py']
