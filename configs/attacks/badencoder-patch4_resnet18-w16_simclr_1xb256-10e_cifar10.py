# Trigger-family battery: BadEncoder's fine-tuning of the width-16 encoder with another
# trigger: a 4x4 seeded random pattern at the fixed top-left corner (2, 2).
# Target truck (9), one reference image; the evaluator knows it as
# evaluate_attack='badencoder-patch4'.
#   python tools/train.py \
#     configs/attacks/badencoder-patch4_resnet18-w16_simclr_1xb256-10e_cifar10.py \
#     --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py']
model = dict(targets=[dict(trigger=dict(type='PatchTrigger', size=4, pattern='random',
                                        position=(2, 2), seed=7),
                           reference=dict(mode='class', class_index=9, num=1))])
evaluate_attack = 'badencoder-patch4'
