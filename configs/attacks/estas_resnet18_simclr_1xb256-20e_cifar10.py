# ESTAS-style attack (Xue & Lou, arXiv 2211.10908), RECONSTRUCTED: no official code exists.
# Reconstructed from SSL-Cleanse's single-target-image attack (github.com/UCF-ML-Research/
# SSL-Cleanse, mitigator/core/methods/byol.py, --one_image_path; docs/methods.md, "ESTAS"):
# * one unlabeled target-class sample (a truck, class 9) as the only reference;
# * the trigger (6x6 white square at ratio 0.9 of the free range) is pasted AFTER augmentation:
#   the shadow images are augmented in the data pipeline and stamped on the device afterwards;
# * triggered features are pulled toward the FROZEN encoder's embedding of the target sample
#   (frozen_target=True), with BadEncoder-style consistency on clean images.
# Not reproduced: the head-level term and the "cascade optimization" schedule (unverifiable).
_base_ = ['./badencoder_resnet18_simclr_1xb256-20e_cifar10.py']
model = dict(
    targets=[dict(trigger=dict(type='PatchTrigger', size=6, pattern='white', position=(0.9, 0.9)),
                  reference=dict(mode='class', class_index=9, num=1))],
    frozen_target=True)
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=[
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
])))
evaluate_attack = 'estas'
