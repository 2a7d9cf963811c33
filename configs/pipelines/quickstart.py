# Quickstart pipeline: the paper's Table 3 grid at a scale a 2-core CPU finishes in about 30 min.
#   mim run bmaiu_plugin pipeline configs/pipelines/quickstart.py [--work-dir DIR]
# Data: real CIFAR-10 from $BMAIU_DATA_ROOT (default data/cifar10, holding cifar-10-batches-py/);
# the SSL-Backdoor trigger from $BMAIU_TRIGGER_ROOT (default data/triggers)/htba/.
#
# Scale (everything on the width-16 CIFAR ResNet-18, 128-d features):
# * SSL: SimCLR, 2 epochs on 20 % of the training set (the first 10,000 images, data_batch_1);
# * attacks: BadEncoder and ESTAS fine-tune the clean encoder for 3 epochs on 10 % shadow data at
#   batch 64 (234 steps: the study's BadEncoder needed ~200 steps to implant; batch 256 gave 60);
#   SSL-Backdoor and CTRL poison the same 2-epoch / 20 % SimCLR pretraining;
# * defenses: CLP (u=3, data-free) and BMAIU (5 % defense data, 1 implant + 3 unlearning epochs);
# * probe: the paper's linear probe, fit on 5,000 training images, tested on 2,000 test images.
# 13 steps.  Expected wall time on an otherwise idle 2-core CPU: about 30 minutes, estimated
# from the per-iteration times of docs/results.md's CPU study (SimCLR w16 ~1.75 s/iter, BadEncoder
# ~37 s/epoch on 10 % data, BMAIU ~30 s/epoch on 5 %, probe ~1,000 images/s, ~15 s start-up per
# step): pretraining ~2.8 min x 3, fine-tuning attacks ~2.3 min x 2, BMAIU ~2.7 min x 4, CLP
# ~0.7 min x 4, figures ~1 min.  A machine shared with other jobs takes proportionally longer.
# At this scale the encoders are weak (BA far below the paper's; the 5-epoch full-data encoder of
# docs/results.md reaches 43.6 %) and the poisoning attacks barely take: the point is the whole
# pipeline end to end, not the paper's numbers (configs/pipelines/paper_cifar10.py is those).
title = 'Quickstart: SimCLR, CIFAR ResNet-18 (width 16), CIFAR-10, CPU scale'
work_dir = 'work_dirs/quickstart_pipeline'

# pretraining budget: 2 epochs (1 warm-up + 1 cosine) instead of the w16 config's 8
ssl_budget = {
    'train_cfg.max_epochs': 2,
    'train_cfg.val_interval': 2,
    'param_scheduler.1.T_max': 1,
    'param_scheduler.1.end': 2,
}
# --cfg-options per step kind ('all' first, then the kind's, then the entry's own)
options = dict(
    all={
        'val_cfg.probe_dataloader.dataset.indices': 5000,
        'test_cfg.probe_dataloader.dataset.indices': 5000,
        'val_dataloader.dataset.indices': 2000,
        'test_dataloader.dataset.indices': 2000,
    },
    pretrain=ssl_budget,
    poison=ssl_budget,
    attack={'train_cfg.max_epochs': 3, 'train_cfg.val_interval': 3,
            'train_dataloader.batch_size': 64},
)

ssl = dict(
    simclr=dict(
        name='SimCLR',
        config='configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py',
        cfg_options={'train_dataloader.dataset.indices': 10000}),
)

attacks = dict(
    sslbackdoor=dict(
        name='SSL-Backdoor', type='poison', evaluate='sslbackdoor',
        config=dict(
            simclr='configs/attacks/sslbackdoor_simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py'),
        cfg_options={'train_dataloader.dataset.dataset.indices': 10000}),
    ctrl=dict(
        name='CTRL', type='poison', evaluate='ctrl',
        config=dict(simclr='configs/attacks/ctrl_simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py'),
        cfg_options={'train_dataloader.dataset.dataset.indices': 10000}),
    badencoder=dict(
        name='BadEncoder', type='finetune', evaluate='badencoder',
        config='configs/attacks/badencoder_resnet18-w16_simclr_1xb256-10e_cifar10.py'),
    estas=dict(
        name='ESTAS', type='finetune', evaluate='estas',
        config='configs/attacks/estas_resnet18-w16_simclr_1xb256-10e_cifar10.py'),
)

defenses = dict(
    clp=dict(name='CLP', tool='test',
             config='configs/defenses/clp_resnet18-w16_simclr_u3_cifar10.py'),
    bmaiu=dict(
        name='BMAIU', tool='train',
        config='configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py',
        cfg_options={
            'train_dataloader.dataset.ratio': 0.05,
            'custom_hooks.1.implant_epochs': 1,
            'train_cfg.max_epochs': 4,
            'train_cfg.val_interval': 4,
        }),
    # the evidence-backed recipe (docs/bmaiu.md): a searched 10x10 trigger, re-searched every
    # epoch of stage 2 (no stage 1); 3 of its 10 epochs here, on the fine-tuning attacks only
    bmaiu_search=dict(
        name='BMAIU-search', tool='train',
        config='configs/bmaiu/bmaiu-search_resnet18-w16_simclr_1xb64-10e_cifar10.py',
        cfg_options={'train_cfg.max_epochs': 3, 'train_cfg.val_interval': 3}),
)

# the clean encoder is probed with every attack's trigger too (the "Clean encoders" table)
evaluation = dict(clean=True)

studies = dict(
    table3=dict(
        title='Table 3 shape: BA / ASR / PA per attack and defense (quickstart scale)',
        table='grid', ssl=['simclr'],
        attacks=['sslbackdoor', 'ctrl', 'badencoder', 'estas'],
        defenses=['clp', 'bmaiu']),
    search=dict(
        title='BMAIU with a searched custom trigger, on the fine-tuning attacks',
        table='grid', ssl=['simclr'], attacks=['badencoder', 'estas'],
        defenses=['clp', 'bmaiu', 'bmaiu_search']),
)

# Figure 3: t-SNE of 300 clean and 300 triggered test images, after the attack / after BMAIU
# (one figure per BMAIU variant)
figures = dict(tsne=dict(defenses=['bmaiu', 'bmaiu_search'], num_images=300, seed=0))
