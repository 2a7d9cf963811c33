# Probe a width-16 CIFAR ResNet-18 encoder (the CPU scale of docs/results.md); see
# probe_resnet18_cifar10.py.
_base_ = ['./probe_resnet18_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
