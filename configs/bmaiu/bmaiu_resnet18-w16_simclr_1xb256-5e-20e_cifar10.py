# BMAIU at the CPU scale of docs/results.md (width-16 CIFAR ResNet-18, 10 % defense data,
# 5 implant + 20 unlearning epochs).
_base_ = ['../bmaiu_simclr_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
