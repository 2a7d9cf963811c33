# Multi-target BadEncoder of BMAIU's observation study (paper section 3.2): the 10 HTBA triggers
# resized to 8x8, trigger i -> class i (one reference image each), 20 epochs, batch 64, lr 0.01.
# Placement (not stated in the paper): all triggers at rows/cols 23-30 (bottom-right, 1-px margin).
#   mim train bmaiu_plugin configs/attacks/badencoder-multitarget_resnet18_simclr_1xb64-20e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
# HTBA triggers: $BMAIU_TRIGGER_ROOT (default data/triggers)/htba/trigger_10..19.png.
_base_ = ['./badencoder_resnet18_simclr_1xb256-20e_cifar10.py']
targets = [
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_10.png'),
         reference=dict(mode='class', class_index=0, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_11.png'),
         reference=dict(mode='class', class_index=1, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_12.png'),
         reference=dict(mode='class', class_index=2, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_13.png'),
         reference=dict(mode='class', class_index=3, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_14.png'),
         reference=dict(mode='class', class_index=4, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_15.png'),
         reference=dict(mode='class', class_index=5, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_16.png'),
         reference=dict(mode='class', class_index=6, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_17.png'),
         reference=dict(mode='class', class_index=7, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_18.png'),
         reference=dict(mode='class', class_index=8, num=1)),
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern='{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_19.png'),
         reference=dict(mode='class', class_index=9, num=1)),
]
model = dict(targets=targets, targets_per_step=None)
train_dataloader = dict(batch_size=64)
# the attacker knows its triggers: the evaluator reports ASR per target (Table 1's first column)
evaluate_attack = 'multitarget'
