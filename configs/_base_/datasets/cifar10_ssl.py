# CIFAR-10, two augmented views per image (SimCLR / BYOL / MoCo v2 recipe on 32x32 images).
# Data: $BMAIU_DATA_ROOT (or data/cifar10) holding cifar-10-batches-py/; never downloaded.
_base_ = ['./cifar10_mean_std.py']
dataset_type = 'BackdoorCIFAR10'
data_preprocessor = dict(
    type='SelfSupDataPreprocessor',
    mean={{_base_.cifar10_mean}},
    std={{_base_.cifar10_std}},
    to_rgb=False)  # CIFAR-10 batches are RGB already

view_pipeline = [
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4,
                          hue=0.1)],
         prob=0.8),
    # images are RGB: grayscale weights in RGB order
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.299, 0.587, 0.114)),
]
train_pipeline = [
    dict(type='MultiView', num_views=2, transforms=[view_pipeline]),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=512,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    drop_last=True,
    dataset=dict(type=dataset_type, data_root=None, check_md5=False, split='train',
                 pipeline=train_pipeline))
