# CTRL (Li et al., ICCV 2023; github.com/meet-cjli/CTRL, utils/frequency.py and
# loaders/diffaugment.py) on SimCLR: the victim pre-trains the SimCLR CIFAR ResNet-18 (500 epochs,
# batch 512, lr 0.06) on a training set where 1 % of the *dataset* (500 images = 10 % of the
# target class airplane, 0), the first target-class images in dataset order as in CTRL's
# PoisonAgent, carry the frequency trigger: +100 at DCT coefficients (15, 15) and (31, 31) of the
# U and V channels of the whole 32x32 image, stamped once (stored as uint8) before the victim's
# augmentation.  Details: docs/methods.md, "CTRL".
#   mim train bmaiu_plugin configs/attacks/ctrl_resnet18_simclr_1xb512-coslr-500e_cifar10.py
# The victim's recipe is the common SSL recipe of configs/selfsup/, not CTRL's own (800 epochs,
# SupConLoss scale, no normalization).  The record of what was poisoned is written to
# <work_dir>/poison_record.json; the end-of-training probe reports the CTRL trigger's ASR.
_base_ = ['../selfsup/simclr_resnet18_1xb512-coslr-500e_cifar10.py']

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
