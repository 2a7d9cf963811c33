# SSL-Backdoor (Saha et al., CVPR 2022; github.com/UMBCvision/SSL-Backdoor,
# poison-generation/generate_poison.py), CIFAR-10 adaptation, on BYOL: the victim pre-trains the
# BYOL CIFAR ResNet-18 (500 epochs, batch 512, lr 0.06) on a training set where 50 % of the
# target class (airplane, 0; 2,500 images = 5 % of the data), a seeded random choice, carry the
# HTBA trigger_10 resized to 8x8 at a random position in the central band (0.25, 0.75) of the
# image, stamped once before the victim's augmentation.  Details: docs/methods.md,
# "SSL-Backdoor".
#   mim train bmaiu_plugin configs/attacks/sslbackdoor_resnet18_byol_1xb512-coslr-500e_cifar10.py
# Trigger image: $BMAIU_TRIGGER_ROOT/htba/trigger_10.png (default data/triggers/htba/).  The
# record of what was poisoned is written to <work_dir>/poison_record.json; the end-of-training
# probe reports the ASR of the evaluator's SSL-Backdoor trigger (same image, random position in
# (0.1, 0.9)).
_base_ = ['../selfsup/byol_resnet18_1xb512-coslr-500e_cifar10.py']

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
