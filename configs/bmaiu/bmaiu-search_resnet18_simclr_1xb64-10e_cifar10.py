# BMAIU with a searched custom trigger (docs/results.md, "Session 3"; docs/bmaiu.md):
#   mim train bmaiu_plugin configs/bmaiu/bmaiu-search_resnet18_simclr_1xb64-10e_cifar10.py \
#       --cfg-options encoder_checkpoint=PATH
# The custom trigger keeps BMAIU's form (one pattern, pasted at a random position per image), but
# its 10x10 pattern is optimised on the defense data so that the suspect's features collapse
# most (label-free, blind to the attack), and re-searched on the encoder being unlearned every
# epoch of stage 2.  At CPU scale unlearning such a trigger removes BadEncoder / ESTAS /
# multi-target backdoors where the paper's random 4x4 pattern does not; implanting it first
# (stage 1) added nothing there, so this recipe runs stage 2 only (implant_epochs=0).
_base_ = ['./bmaiu_resnet18_simclr_1xb256-5e-20e_cifar10.py']
implant_epochs = 0
unlearn_epochs = 10
model = dict(
    custom_trigger=dict(size=10),
    trigger_search=dict(steps=300, lr=0.1, batch_size=128, objective='collapse',
                        restarts_steps=100))
train_dataloader = dict(batch_size=64)
train_cfg = dict(max_epochs=implant_epochs + unlearn_epochs,
                 val_interval=implant_epochs + unlearn_epochs)
custom_hooks = [
    dict(type='ReferenceSetHook'),
    dict(type='BMAIUStageHook', implant_epochs=implant_epochs),
    dict(type='CustomTriggerSearchHook', interval=1),
]
