# The fine-tuning-only control at the CPU scale of docs/results.md (width-16 CIFAR ResNet-18,
# 5 % defense data, probe trained on the first 10,000 training images): the budget of
# ../searched_trigger/searched-trigger_resnet18-w16_1xb64-10e_cifar10.py.
_base_ = ['./finetune-control_resnet18_1xb64-10e_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16))
train_dataloader = dict(dataset=dict(ratio=0.05))
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
