# DECREE at the CPU scale of docs/results.md (width-16 CIFAR ResNet-18); see
# decree_resnet18_simclr_cifar10.py.  Finishes in a few minutes on 2 CPU cores.
#   python tools/test.py configs/defenses/decree_resnet18-w16_simclr_cifar10.py ENCODER_CKPT
_base_ = ['./decree_resnet18_simclr_cifar10.py']
model = dict(
    backbone=dict(stem_channels=16, base_channels=16),
    # CPU budget: 500 shadow images (5 % per class), batch 64 (8 steps an epoch, so the lr
    # milestones at epochs 30 / 50 are reached), at most 500 steps: about 1.5-2 min on 2 busy
    # cores, plus about 1 min of probe.  Measured on the CPU-study width-16 SimCLR / BadEncoder
    # encoders: the best mask still shrinks from 150 steps (PL1 ~0.26) to ~500 (~0.18, early stop).
    decree=dict(shadow_ratio=0.05, batch_size=64, max_steps=500))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
