# Trigger-family battery: BadEncoder's fine-tuning of the width-16 encoder with another
# trigger: a fixed smooth warp field, WaNet's k = 4 at strength 1
# (Nguyen & Tran, ICLR 2021).
# Target truck (9), one reference image; the evaluator knows it as
# evaluate_attack='badencoder-warp'.
#   python tools/train.py \
#     configs/attacks/badencoder-warp_resnet18-w16_simclr_1xb256-10e_cifar10.py \
#     --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py']
model = dict(targets=[dict(trigger=dict(type='WarpTrigger', k=4, strength=1.0, seed=5),
                           reference=dict(mode='class', class_index=9, num=1))])
evaluate_attack = 'badencoder-warp'
