# Searched-trigger unlearning on a CIFAR ResNet-18 encoder (SimCLR, BYOL or MoCo v2: the
# backbone is the same); docs/searched_trigger.md.
#   mim train bmaiu_plugin configs/searched_trigger/searched-trigger_resnet18_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
# A 10x10 patch pattern, pasted at a random position per image, is searched on the defense data
# so that the suspect's features collapse most (label-free, blind to the attack), then unlearned
# with BMAIU's stage-2 loss for 10 epochs, re-searched on the encoder being unlearned before
# every epoch.  Output: the defended encoder's checkpoint (backbone.*) and metrics.json with
# BA/ASR/PA of the suspect and the defended encoder.
_base_ = [
    '../_base_/models/resnet18_cifar.py',  # the encoder and the CIFAR-10 mean / std
    '../_base_/datasets/cifar10_finetune.py',
    '../_base_/datasets/cifar10_probe.py',
    '../_base_/default_runtime.py',
]

# ---- the defense's inputs: the suspect encoder and 10 % of the (unlabeled) training data ----
encoder_checkpoint = None  # required: --cfg-options encoder_checkpoint=PATH
epochs = 10

model = dict(
    type='SearchedTriggerUnlearning',
    encoder_checkpoint=encoder_checkpoint,
    # the searched trigger: its 10x10 pattern starts seeded-random; random position per sample
    trigger=dict(type='PatchTrigger', size=10, pattern='random', position='random', seed=2025),
    # the first search, on the suspect; each re-search (TriggerSearchHook) runs restart_steps
    search=dict(steps=300, lr=0.1, batch_size=128, objective='collapse'),
    restart_steps=100,
    max_images=2048,
    # R, the repulsion's target: a class drawn at random ('kmeans' for label-free data)
    reference=dict(mode='random_class', num=10),
    u0=1., u2=10., u3=1.,
    freeze_bn=True,
    img_size=32,
    seed=0)

train_dataloader = dict(batch_size=64)
optim_wrapper = dict(type='OptimWrapper',
                     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4))
param_scheduler = []
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
custom_hooks = [
    dict(type='PrepareModelHook'),  # chooses R and runs the first search
    dict(type='TriggerSearchHook', interval=1),
]
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=1))

# ---- EVALUATOR ONLY: the attacker's trigger, used by the probe, never seen by the defense ----
# one of 'badencoder', 'estas', 'sslbackdoor', 'ctrl', 'multitarget' (or a list)
evaluate_attack = 'badencoder'
