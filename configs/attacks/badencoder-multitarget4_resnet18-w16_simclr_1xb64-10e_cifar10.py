# Four-trigger multi-target BadEncoder on the width-16 CIFAR ResNet-18: HTBA triggers 10-13
# (8x8, bottom-right) -> classes 0-3, all four in every step, 10 % shadow data, 10 epochs at
# batch 64.  The smallest encoder carrying several triggers, for the observation study of BMAIU
# paper section 3.2 at CPU scale (docs/results.md, Tables 2 and 5).
#   mim train bmaiu_plugin configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=CLEAN_ENCODER
_base_ = ['./badencoder-multitarget_resnet18_simclr_1xb64-20e_cifar10.py']
max_epochs = 10
__htba = '{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba'
targets = [
    dict(trigger=dict(type='PatchTrigger', size=8, position=(23, 23),
                      pattern=f'{__htba}/trigger_1{i}.png'),
         reference=dict(mode='class', class_index=i, num=1)) for i in range(4)
]
model = dict(backbone=dict(stem_channels=16, base_channels=16), targets=targets,
             targets_per_step=None)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
# probe trained on the first 10,000 training images (data_batch_1), as in the other w16 configs;
# the evaluator reports all ten HTBA triggers: 4-9 were never implanted (controls)
val_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
test_cfg = dict(probe_dataloader=dict(dataset=dict(indices=10000)))
