# BYOL with a CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool): projector 512-4096-256, predictor
# 256-4096-256 (mmpretrain's BYOL heads), cosine-similarity loss.  The target network is an EMA
# of backbone + projector whose decay starts at 0.996 (mmpretrain's `base_momentum` is 1 - decay)
# and is cosine-annealed to 1 over `max_iters` (read from the MessageHub, set by the runner).
model = dict(
    type='BYOL',
    base_momentum=0.004,  # EMA decay tau = 1 - 0.004 = 0.996 at the start
    backbone=dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='BN'),
                  zero_init_residual=False),
    neck=dict(type='NonLinearNeck', norm_cfg=dict(type='SyncBN'), in_channels=512, hid_channels=4096, out_channels=256,
              num_layers=2, with_bias=True, with_last_bn=False, with_avg_pool=True),
    head=dict(
        type='LatentPredictHead',
        predictor=dict(type='NonLinearNeck', norm_cfg=dict(type='SyncBN'), in_channels=256, hid_channels=4096,
                       out_channels=256, num_layers=2, with_bias=True, with_last_bn=False,
                       with_avg_pool=False),
        loss=dict(type='CosineSimilarityLoss')),
)
