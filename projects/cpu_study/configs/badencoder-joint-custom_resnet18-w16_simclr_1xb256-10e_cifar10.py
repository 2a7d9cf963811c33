# Diagnostic, not an attack of the BMAIU paper: BadEncoder's white square -> truck AND BMAIU's
# custom trigger (the seeded random 8x8 pattern at a random position, seed 2025) -> ship,
# implanted jointly into the clean width-16 encoder.  Unlearning the custom trigger afterwards
# (cpu_study.sh unlearn joint_trigger8 default) tests whether a trigger implanted together with
# the attacker's shares its circuit, unlike one implanted later (BMAIU's stage 1).
#   python tools/train.py \
#     projects/cpu_study/configs/badencoder-joint-custom_resnet18-w16_simclr_1xb256-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['../../../configs/attacks/badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py']
model = dict(targets=[
    dict(trigger=dict(type='PatchTrigger', size=10, pattern='white', position=(21, 21)),
         reference=dict(mode='class', class_index=9, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, pattern='random', position='random',
                      seed=2025),
         reference=dict(mode='class', class_index=8, num=1)),
])
