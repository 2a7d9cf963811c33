# I-BAU on the width-16 CIFAR ResNet-18 (any SimCLR / BYOL / MoCo v2 width-16 encoder); see
# ibau_resnet18_1xb256-5e_cifar10.py.
#   python tools/train.py configs/defenses/ibau_resnet18-w16_1xb256-5e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
_base_ = ['./ibau_resnet18_1xb256-5e_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete.
# PL1, when enabled: the CPU budget of decree_resnet18-w16_cifar10.py
__pl1 = dict(shadow_ratio=0.05, batch_size=64, max_steps=500)
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)), pl1=__pl1)
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)), pl1=__pl1)
