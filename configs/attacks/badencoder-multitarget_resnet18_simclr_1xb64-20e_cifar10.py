# Multi-target BadEncoder of BMAIU's observation study (BMAIU paper section 3.2; BadEncoder's
# multi-target form, github.com/jinyuan-jia/BadEncoder, datasets/backdoor_dataset.py): the 10
# HTBA triggers resized to 8x8, trigger i -> class i (one reference image each), 20 epochs,
# batch 64, lr 0.01.  Placement (not stated in the paper): all triggers at rows/cols 23-30
# (bottom-right, 1-px margin).
#   mim train bmaiu_plugin configs/attacks/badencoder-multitarget_resnet18_simclr_1xb64-20e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
# HTBA triggers: $BMAIU_TRIGGER_ROOT (default data/triggers)/htba/trigger_10..19.png.
_base_ = ['./badencoder_resnet18_simclr_1xb256-20e_cifar10.py']
__htba = '{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba'
targets = [
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern=f'{__htba}/trigger_1{i}.png'),
         reference=dict(mode='class', class_index=i, num=1)) for i in range(10)
]
model = dict(targets=targets, targets_per_step=None)
train_dataloader = dict(batch_size=64)
# the attacker knows its triggers: the evaluator reports ASR per target (Table 1's first column)
evaluate_attack = 'multitarget'
