# Linear-probe backdoor evaluation on CIFAR-10 (val and test stage of any config).
# The probe is trained on cached features of the labeled train split and evaluated on the test
# split, clean and with each trigger in `val_cfg.triggers` (the attacker's triggers: known to
# the evaluator only, never to a defense).
probe_pipeline = [dict(type='PackInputs')]  # uint8 images, no augmentation
probe_train_dataloader = dict(
    batch_size=512,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='BackdoorCIFAR10', data_root=None, check_md5=False, split='train',
                 pipeline=probe_pipeline))
val_dataloader = dict(
    batch_size=512,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='BackdoorCIFAR10', data_root=None, check_md5=False, split='test',
                 pipeline=probe_pipeline))
test_dataloader = val_dataloader
# the paper's probe: FC 512x10, 10 epochs, batch 64, lr 0.1
val_evaluator = dict(type='BackdoorProbeMetric', epochs=10, batch_size=64, lr=0.1)
test_evaluator = val_evaluator
val_cfg = dict(type='BackdoorProbeLoop', probe_dataloader=probe_train_dataloader, triggers=[])
test_cfg = dict(type='BackdoorProbeLoop', probe_dataloader=probe_train_dataloader, triggers=[],
                mode='test')
