# Trigger-family battery: BadEncoder's fine-tuning of the width-16 encoder with another
# trigger: a seeded full-image noise pattern blended at alpha 0.2
# (Chen et al., arXiv:1712.05526).
# Target truck (9), one reference image; the evaluator knows it as
# evaluate_attack='badencoder-blend'.
#   python tools/train.py \
#     configs/attacks/badencoder-blend_resnet18-w16_simclr_1xb256-10e_cifar10.py \
#     --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py']
model = dict(targets=[dict(trigger=dict(type='BlendTrigger', pattern='noise', alpha=0.2, seed=11),
                           reference=dict(mode='class', class_index=9, num=1))])
evaluate_attack = 'badencoder-blend'
