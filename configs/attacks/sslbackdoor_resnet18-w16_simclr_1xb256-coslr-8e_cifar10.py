# SSL-Backdoor on the CPU-scale SimCLR encoder (CIFAR ResNet-18 at width 16, batch 256,
# 8 epochs; configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py): the poisoning of
# sslbackdoor_resnet18_simclr_1xb512-coslr-500e_cifar10.py (50 % of class 0, HTBA trigger_10 at
# 8x8, random position in (0.25, 0.75)).  At 8 epochs expect a weak backdoor: this config checks
# the pipeline end to end on a CPU, it does not reproduce the attack's ASR.
_base_ = ['../selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py']

htba_trigger = '{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba/trigger_10.png'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='PoisonedDataset',
        dataset={{_base_.train_dataloader.dataset}},
        trigger=dict(type='PatchTrigger', size=8, pattern=htba_trigger, position='random',
                     area=(0.25, 0.75)),
        target_class=0,
        poison_rate=0.5,
        rate_of='class',
        selection='random',
        seed=0))
custom_hooks = [dict(type='PoisonRecordHook')]
evaluate_attack = 'sslbackdoor'
