# CTRL on the CPU-scale SimCLR encoder (CIFAR ResNet-18 at width 16, batch 256, 8 epochs;
# configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py): the poisoning of
# ctrl_resnet18_simclr_1xb512-coslr-500e_cifar10.py (the first 1 % of the dataset's images of
# class 0, magnitude 100).  At 8 epochs expect a weak backdoor: this config checks the pipeline
# end to end on a CPU, it does not reproduce the attack's ASR.
_base_ = ['../selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py']

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='PoisonedDataset',
        dataset={{_base_.train_dataloader.dataset}},
        trigger=dict(type='CTRLTrigger', magnitude=100, positions=((15, 15), (31, 31)),
                     window=32, channels=(1, 2)),
        target_class=0,
        poison_rate=0.01,
        rate_of='dataset',
        selection='first',
        seed=0))  # unused by selection='first' (CTRL's choice is deterministic)
custom_hooks = [dict(type='PoisonRecordHook')]
evaluate_attack = 'ctrl'
