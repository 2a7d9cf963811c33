# SSL-Cleanse on the width-16 CIFAR ResNet-18 (any SimCLR / BYOL / MoCo v2 width-16 encoder); see
# sslcleanse_resnet18_1xb256-20e_cifar10.py.
#   python tools/train.py configs/defenses/sslcleanse_resnet18-w16_1xb256-20e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
_base_ = ['./sslcleanse_resnet18_1xb256-20e_cifar10.py']
model = dict(
    backbone=dict(stem_channels=16, base_channels=16),
    # a smaller synthesis budget for 2 CPU cores (same algorithm and schedule)
    detector=dict(images_per_cluster=64, rounds=100, steps_per_round=5, batch_size=16,
                  check_images=100))
# probe trained on the first 10,000 training images (data_batch_1) instead of 50,000, so that
# evaluating several encoders stays within minutes on 2 cores; the test split is complete
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
