# CLP on the width-16 CIFAR ResNet-18 (any SimCLR / BYOL / MoCo v2 width-16 encoder); see
# clp_resnet18_u3_cifar10.py.  The CPU-scale defense of docs/results.md and of
# configs/pipelines/quickstart.py.
#   python tools/test.py configs/defenses/clp_resnet18-w16_u3_cifar10.py ENCODER_CKPT
_base_ = ['./clp_resnet18_u3_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete.
# PL1, when enabled: the CPU budget of decree_resnet18-w16_cifar10.py
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)),
                pl1=dict(shadow_ratio=0.05, batch_size=64, max_steps=500))
