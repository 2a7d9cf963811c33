# Trigger-family battery: BadEncoder's fine-tuning of the width-16 encoder with another
# trigger: CTRL's frequency trigger (magnitude 100 at DCT (15, 15),
# (31, 31) of U and V; Li et al., ICCV 2023) used by a fine-tuning attack, not data poisoning.
# Target truck (9), one reference image; the evaluator knows it as
# evaluate_attack='badencoder-ctrl'.
#   python tools/train.py \
#     configs/attacks/badencoder-ctrl_resnet18-w16_simclr_1xb256-10e_cifar10.py \
#     --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py']
model = dict(targets=[dict(trigger=dict(type='CTRLTrigger', magnitude=100),
                           reference=dict(mode='class', class_index=9, num=1))])
evaluate_attack = 'badencoder-ctrl'
