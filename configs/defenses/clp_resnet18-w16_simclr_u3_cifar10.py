# CLP at the CPU scale of docs/results.md (width-16 CIFAR ResNet-18); see
# clp_resnet18_simclr_u3_cifar10.py.  Any SimCLR / BYOL / MoCo width-16 encoder checkpoint.
#   python tools/test.py configs/defenses/clp_resnet18-w16_simclr_u3_cifar10.py ENCODER_CKPT
_base_ = ['./clp_resnet18_simclr_u3_cifar10.py']
model = dict(backbone=dict(stem_channels=16, base_channels=16),
             # the CPU budget of decree_resnet18-w16_simclr_cifar10.py, when enabled
             decree=dict(shadow_ratio=0.05, batch_size=64, max_steps=500))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
