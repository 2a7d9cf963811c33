# DRUPE on the width-16 CIFAR ResNet-18 (128-d features) of
# configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py: 10 % shadow data, 10 epochs.
# The CPU-scale attack beside BadEncoder's (configs/pipelines/trigger_battery_w16.py).
_base_ = ['./drupe_resnet18_simclr_1xb256-20e_cifar10.py']
max_epochs = 10
model = dict(backbone=dict(stem_channels=16, base_channels=16))
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# probe trained on the first 10,000 training images (data_batch_1), as in the other w16 configs
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
