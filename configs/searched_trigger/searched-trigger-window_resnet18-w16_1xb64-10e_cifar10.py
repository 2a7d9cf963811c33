# The patch and window searches (searched-trigger-window_resnet18_1xb64-10e_cifar10.py) on the
# width-16 encoder of the CPU-scale study, with its 5 % defense data and 10,000 probe images
# (as searched-trigger_resnet18-w16_1xb64-10e_cifar10.py).  The quickstart's searched-trigger
# step (configs/pipelines/quickstart.py).
_base_ = ['./searched-trigger-window_resnet18_1xb64-10e_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16))
train_dataloader = dict(dataset=dict(ratio=0.05))
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
