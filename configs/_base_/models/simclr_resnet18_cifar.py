# SimCLR with a CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool), projection 512-512-128,
# NT-Xent temperature 0.5 (BadEncoder's / CTRL's CIFAR recipe).
model = dict(
    type='SimCLR',
    backbone=dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='BN'),
                  zero_init_residual=False),
    neck=dict(type='NonLinearNeck', norm_cfg=dict(type='SyncBN'), in_channels=512, hid_channels=512, out_channels=128,
              num_layers=2, with_avg_pool=True),
    head=dict(type='ContrastiveHead', loss=dict(type='CrossEntropyLoss'), temperature=0.5),
)
