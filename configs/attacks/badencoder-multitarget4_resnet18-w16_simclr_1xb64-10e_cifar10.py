# A four-trigger multi-target BadEncoder at the CPU scale of docs/results.md: HTBA triggers 10-13
# (8x8, bottom-right) -> classes 0-3, all four in every step, 10 % shadow data, 10 epochs at
# batch 64, width-16 CIFAR ResNet-18.  The ten-trigger CPU variant with three triggers sampled per
# step implanted only one of them (docs/results.md); this one is the smallest encoder "carrying
# several triggers" for the observation study of paper section 3.2.
#   mim train bmaiu_plugin configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder-multitarget_resnet18-w16_simclr_1xb64-10e_cifar10.py']
__htba = '{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba'
targets = [
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern=f'{__htba}/trigger_1{i}.png'),
         reference=dict(mode='class', class_index=i, num=1)) for i in range(4)
]
model = dict(targets=targets, targets_per_step=None)
# the evaluator reports all ten HTBA triggers: 4-9 were never implanted (controls)
