# SimCLR on ImageNet-100 with EfficientNetV2-S (mmpretrain's EfficientNetV2, arch 's', 1280-d
# output): projection 1280-2048-128, NT-Xent T 0.5 (the CIFAR model's head), 224x224 views,
# 200 epochs, batch 256, SGD lr 0.03 (the CIFAR recipe's 0.06 at batch 512, linearly scaled;
# also MoCo's ImageNet SGD recipe), weight decay 1e-4, 10-epoch warm-up + cosine.
# Probe (BA) at the end on ImageNet-100 (train split -> val split, 224 centre crops).
# `mim train bmaiu_plugin <this file>`.  Needs data/imagenet100/{train,val}.
_base_ = [
    '../_base_/models/simclr_resnet18_cifar.py',
    '../_base_/datasets/imagenet100_ssl.py',
    '../_base_/schedules/cifar10_sgd_coslr.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(_delete_=True, type='EfficientNetV2', arch='s', drop_path_rate=0.),
    neck=dict(in_channels=1280, hid_channels=2048, out_channels=128))

# linear-probe backdoor evaluation on ImageNet-100 (uint8 224x224 centre crops, no augmentation)
probe_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
probe_train_dataloader = dict(
    batch_size=256,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root='data/imagenet100', data_prefix='train',
                 pipeline=probe_pipeline))
val_dataloader = dict(
    batch_size=256,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CustomDataset', data_root='data/imagenet100', data_prefix='val',
                 pipeline=probe_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='BackdoorProbeMetric', epochs=10, batch_size=64, lr=0.1,
                     num_classes=100)
test_evaluator = val_evaluator
val_cfg = dict(type='BackdoorProbeLoop', probe_dataloader=probe_train_dataloader, triggers=[])
test_cfg = dict(type='BackdoorProbeLoop', probe_dataloader=probe_train_dataloader, triggers=[],
                mode='test')

max_epochs = 200
optim_wrapper = dict(optimizer=dict(lr=0.03, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 10, by_epoch=True, begin=10,
         end=max_epochs, eta_min=0.),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=256)
