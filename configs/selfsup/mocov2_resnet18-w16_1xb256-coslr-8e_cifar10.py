# MoCo v2 on CIFAR-10 at the scale a 2-core CPU manages, the counterpart of
# simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py: CIFAR ResNet-18 at width 16 (stem/base channels
# 16 instead of 64: 128-d features), projection 128-128-64, queue 4096 (= 16 x 256), batch 256,
# 8 epochs.
_base_ = ['./mocov2_resnet18_1xb512-coslr-500e_cifar10.py']

model = dict(
    feat_dim=64,
    backbone=dict(stem_channels=16, base_channels=16),
    neck=dict(in_channels=128, hid_channels=128, out_channels=64))
train_dataloader = dict(batch_size=256, num_workers=2, persistent_workers=True)
max_epochs = 8
optim_wrapper = dict(optimizer=dict(lr=0.06))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, by_epoch=True, begin=1,
         end=max_epochs, eta_min=0.),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
auto_scale_lr = dict(base_batch_size=256)
