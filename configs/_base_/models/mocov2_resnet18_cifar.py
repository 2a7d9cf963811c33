# MoCo v2 with a CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool): MLP projection 512-512-128,
# InfoNCE temperature 0.2 against a queue of 4096 keys, key encoder an EMA with decay 0.99
# (mmpretrain's `momentum` is 1 - decay).  The queue length must be a multiple of the global
# batch (keys of a whole batch are enqueued at once): 4096 = 8 x 512.
model = dict(
    type='MoCo',
    queue_len=4096,
    feat_dim=128,
    momentum=0.01,  # EMA decay m = 1 - 0.01 = 0.99
    backbone=dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='BN'),
                  zero_init_residual=False),
    neck=dict(type='MoCoV2Neck', in_channels=512, hid_channels=512, out_channels=128,
              with_avg_pool=True),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.2),
)
