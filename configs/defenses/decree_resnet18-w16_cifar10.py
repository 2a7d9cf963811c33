# DECREE on the width-16 CIFAR ResNet-18; see decree_resnet18_cifar10.py.  Finishes in a few
# minutes on 2 CPU cores.
#   python tools/test.py configs/defenses/decree_resnet18-w16_cifar10.py ENCODER_CKPT
_base_ = ['./decree_resnet18_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete.
# DECREE's CPU budget: 500 shadow images (5 % per class), batch 64 (8 steps an epoch, so the lr
# milestones at epochs 30 / 50 are reached), at most 500 steps: about 1.5-2 min on 2 busy cores,
# plus about 1 min of probe.  On the width-16 SimCLR / BadEncoder encoders of docs/results.md
# the best mask still shrinks from 150 steps (PL1 ~0.26) to ~500 (~0.18, early stop).
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)),
                pl1=dict(shadow_ratio=0.05, batch_size=64, max_steps=500))
