# Trigger-family battery: BadEncoder's fine-tuning of the width-16 encoder with another
# trigger: a 14x14 seeded random pattern at a random position per image.
# Target truck (9), one reference image; the evaluator knows it as
# evaluate_attack='badencoder-patch14'.
#   python tools/train.py \
#     configs/attacks/badencoder-patch14_resnet18-w16_simclr_1xb256-10e_cifar10.py \
#     --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py']
model = dict(targets=[dict(trigger=dict(type='PatchTrigger', size=14, pattern='random',
                                        position='random', seed=8),
                           reference=dict(mode='class', class_index=9, num=1))])
evaluate_attack = 'badencoder-patch14'
