# The small clean data an encoder fine-tune uses (a defender's share of the training set, or an
# attacker's shadow set): a seeded 10 % of the CIFAR-10 training split, uint8 images with no
# augmentation (BadEncoder's recipe).  `train_dataloader.dataset.ratio=0.01` (or 0.05) selects
# 1 % (5 %); `train_dataloader.dataset.indices=N` shrinks it further for a smoke run.
train_dataloader = dict(
    batch_size=256,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    drop_last=False,
    dataset=dict(
        type='RatioSubset', ratio=0.1, seed=0,
        dataset=dict(type='BackdoorCIFAR10', data_root=None, check_md5=False, split='train',
                     pipeline=[dict(type='PackInputs')])))
