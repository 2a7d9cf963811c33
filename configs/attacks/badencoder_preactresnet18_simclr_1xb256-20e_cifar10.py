# BadEncoder on a clean SimCLR PreAct ResNet-18 encoder (BackdoorBench's `preactresnet18`); the
# recipe of badencoder_resnet18_simclr_1xb256-20e_cifar10.py with the backbone swapped.
#   mim train bmaiu_plugin configs/attacks/badencoder_preactresnet18_simclr_1xb256-20e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder_resnet18_simclr_1xb256-20e_cifar10.py']
model = dict(backbone=dict(_delete_=True, type='PreActResNet', depth=18))
