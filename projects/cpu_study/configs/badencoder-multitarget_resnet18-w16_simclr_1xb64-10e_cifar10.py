# Multi-target BadEncoder (BMAIU paper section 3.2) on the width-16 CIFAR ResNet-18: 10 % shadow
# data, 10 epochs at batch 64, three of the ten HTBA triggers per step (an unbiased estimate of
# the ten-trigger loss at under half the cost).
#   python tools/train.py \
#       projects/cpu_study/configs/badencoder-multitarget_resnet18-w16_simclr_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['../../../configs/attacks/badencoder-multitarget_resnet18_simclr_1xb64-20e_cifar10.py']
max_epochs = 10
model = dict(backbone=dict(stem_channels=16, base_channels=16), targets_per_step=3)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# probe trained on the first 10,000 training images (data_batch_1), as in the other w16 configs
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
