# The paper's CIFAR-10 experiments at full scale, for a GPU machine:
#   mim run bmaiu_plugin pipeline configs/pipelines/paper_cifar10.py [--work-dir DIR]
#   (one study only, e.g. Table 3 on SimCLR:  ... --only 'simclr/*')
# Data: CIFAR-10 from $BMAIU_DATA_ROOT (default data/cifar10); HTBA triggers from
# $BMAIU_TRIGGER_ROOT (default data/triggers)/htba/trigger_10..19.png.
#
# Scale: the paper's.  CIFAR ResNet-18 (full width), SimCLR / BYOL 500 epochs at batch 512,
# SSL-Backdoor / CTRL poisoned pretraining at the same recipe, BadEncoder / ESTAS 20 epochs on
# 10 % shadow data, multi-target BadEncoder 20 epochs at batch 64; defenses with 10 % of the
# training set (CLP u=3, I-BAU 5 epochs, SSL-Cleanse 20 unlearning epochs, BMAIU 5 + 20
# epochs); the linear probe on the whole training set, tested on the whole test set.
#
# Studies (one results.md section each):
# * Table 3: {SimCLR, BYOL} x {SSL-Backdoor, CTRL, BadEncoder, ESTAS} x {none, CLP, I-BAU,
#   SSL-Cleanse, BMAIU}, BA / ASR / PA;  DECREE's PL1 of the same attacked encoders;
# * Tables 1, 2, 5 (multi-target BadEncoder, 10 HTBA triggers -> classes 0-9): Table 5 with the
#   four defenses; Table 1 unlearning a synthesized trigger per class (read here as BMAIU whose
#   implanted trigger targets class i: `st<i>`); Table 2 unlearning the genuine trigger AT_i
#   (BMAIU stage 2 only, its trigger = HTBA trigger i at rows/cols 23-30: `at<i>`);
# * Table 6: BMAIU with 1 / 5 / 10 % defense data (BadEncoder, SimCLR);
# * Table 7: ESTAS then BMAIU on VGG-11/16, ResNet-18/34, SENet-18/34 (SimCLR, configs/backbones);
# * Table 8: BMAIU without L0 (consistency), L1 (u2 = 0) or L2 (u3 = 0) (ESTAS, SimCLR);
# * Figures 4-6: BTS / CCS against u1, BA / ASR / PA against u2 and u3 (ESTAS, SimCLR);
# * beyond the paper: BMAIU with the paper's random trigger vs. the searched-trigger recipe
#   (docs/bmaiu.md) on the four attacks and the multi-target encoder (SimCLR).
# 109 steps; the 11 SSL pretrainings (500 epochs each) dominate the cost.
title = 'The paper on CIFAR-10 (Tables 1-3 and 5-8, Figures 3-6), full scale'
work_dir = 'work_dirs/paper_cifar10'

_htba = '{{$BMAIU_TRIGGER_ROOT:data/triggers}}/htba'

ssl = dict(
    simclr=dict(name='SimCLR',
                config='configs/selfsup/simclr_resnet18_1xb512-coslr-500e_cifar10.py'),
    byol=dict(name='BYOL', config='configs/selfsup/byol_resnet18_1xb512-coslr-500e_cifar10.py'),
    # Table 7: SimCLR with other backbones; every later step gets the same backbone
    simclr_vgg11=dict(
        name='VGG11', config='configs/backbones/simclr_vgg11_1xb512-coslr-500e_cifar10.py',
        downstream_options={'model.backbone.type': 'VGG_CIFAR', 'model.backbone.depth': 11}),
    simclr_vgg16=dict(
        name='VGG16', config='configs/backbones/simclr_vgg16_1xb512-coslr-500e_cifar10.py',
        downstream_options={'model.backbone.type': 'VGG_CIFAR', 'model.backbone.depth': 16}),
    simclr_resnet34=dict(
        name='ResNet34', config='configs/backbones/simclr_resnet34_1xb512-coslr-500e_cifar10.py',
        downstream_options={'model.backbone.depth': 34}),
    simclr_senet18=dict(
        name='SENet18', config='configs/backbones/simclr_senet18_1xb512-coslr-500e_cifar10.py',
        downstream_options={'model.backbone.type': 'SENet_CIFAR', 'model.backbone.depth': 18}),
    simclr_senet34=dict(
        name='SENet34', config='configs/backbones/simclr_senet34_1xb512-coslr-500e_cifar10.py',
        downstream_options={'model.backbone.type': 'SENet_CIFAR', 'model.backbone.depth': 34}),
)

attacks = dict(
    sslbackdoor=dict(
        name='SSL-Backdoor', type='poison', evaluate='sslbackdoor',
        config=dict(
            simclr='configs/attacks/sslbackdoor_resnet18_simclr_1xb512-coslr-500e_cifar10.py',
            byol='configs/attacks/sslbackdoor_resnet18_byol_1xb512-coslr-500e_cifar10.py')),
    ctrl=dict(
        name='CTRL', type='poison', evaluate='ctrl',
        config=dict(simclr='configs/attacks/ctrl_resnet18_simclr_1xb512-coslr-500e_cifar10.py',
                    byol='configs/attacks/ctrl_resnet18_byol_1xb512-coslr-500e_cifar10.py')),
    badencoder=dict(
        name='BadEncoder', type='finetune', evaluate='badencoder',
        config='configs/attacks/badencoder_resnet18_simclr_1xb256-20e_cifar10.py'),
    estas=dict(name='ESTAS', type='finetune', evaluate='estas',
               config='configs/attacks/estas_resnet18_simclr_1xb256-20e_cifar10.py'),
    multitarget=dict(
        name='multi-target BadEncoder', type='finetune', evaluate='multitarget',
        config='configs/attacks/badencoder-multitarget_resnet18_simclr_1xb64-20e_cifar10.py'),
)

_bmaiu_config = 'configs/bmaiu_simclr_cifar10.py'
defenses = dict(
    clp=dict(name='CLP', tool='test', config='configs/defenses/clp_resnet18_u3_cifar10.py'),
    ibau=dict(name='I-BAU', tool='train',
              config='configs/defenses/ibau_resnet18_1xb256-5e_cifar10.py'),
    sslcleanse=dict(name='SSL-Cleanse', tool='train',
                    config='configs/defenses/sslcleanse_resnet18_1xb256-20e_cifar10.py'),
    bmaiu=dict(name='BMAIU', tool='train', config=_bmaiu_config),
    # the searched-trigger recipe of docs/bmaiu.md (stage 2 only, trigger re-searched per epoch)
    searched_trigger=dict(name='Searched trigger', tool='train',
                      config='configs/searched_trigger/searched-trigger_resnet18_1xb64-10e_cifar10.py'),
    decree=dict(name='DECREE', tool='test',
                config='configs/defenses/decree_resnet18_cifar10.py'),
    # Table 6: defense data ratio (10 % is `bmaiu`)
    bmaiu_ratio1=dict(name='1%', config=_bmaiu_config,
                      cfg_options={'train_dataloader.dataset.ratio': 0.01}),
    bmaiu_ratio5=dict(name='5%', config=_bmaiu_config,
                      cfg_options={'train_dataloader.dataset.ratio': 0.05}),
    # Table 8: one loss term removed (L0 needs a consistency weight `model.u0` on BMAIU)
    bmaiu_no_l0=dict(name='without L0', config=_bmaiu_config, cfg_options={'model.u0': 0.}),
    bmaiu_no_l1=dict(name='without L1', config=_bmaiu_config, cfg_options={'model.u2': 0.}),
    bmaiu_no_l2=dict(name='without L2', config=_bmaiu_config, cfg_options={'model.u3': 0.}),
    # Figures 4-6: weight sweeps (u1 = 1, u2 = 10, u3 = 1 is `bmaiu`)
    **{f'bmaiu_u1_{v}': dict(config=_bmaiu_config, cfg_options={'model.u1': v})
       for v in (0.1, 0.5, 2.0, 5.0, 10.0)},
    # (u2 = 0 and u3 = 0 are Table 8's `bmaiu_no_l1` and `bmaiu_no_l2`)
    **{f'bmaiu_u2_{v}': dict(config=_bmaiu_config, cfg_options={'model.u2': v})
       for v in (1.0, 5.0, 20.0, 50.0)},
    **{f'bmaiu_u3_{v}': dict(config=_bmaiu_config, cfg_options={'model.u3': v})
       for v in (0.5, 2.0, 5.0, 10.0)},
    # Table 1: unlearn a synthesized trigger aimed at class i (BMAIU implanting toward class i)
    **{f'st{i}': dict(name=f'ST{i}', config=_bmaiu_config, cfg_options={
        'model.reference.mode': 'class', 'model.reference.class_index': i,
        'model.custom_trigger.seed': i}) for i in range(10)},
    # Table 2: unlearn the genuine trigger AT_i (no implantation: stage 2 for 20 epochs)
    **{f'at{i}': dict(name=f'AT{i}', config=_bmaiu_config, cfg_options={
        'model.custom_trigger.pattern': f'{_htba}/trigger_{10 + i}.png',
        'model.custom_trigger.size': 8, 'model.custom_trigger.position': [23, 23],
        'model.reference.mode': 'class', 'model.reference.class_index': i,
        'custom_hooks.1.implant_epochs': 0, 'train_cfg.max_epochs': 20,
        'train_cfg.val_interval': 20}) for i in range(10)},
)

evaluation = dict(clean=True)

_four_attacks = ['sslbackdoor', 'ctrl', 'badencoder', 'estas']
studies = dict(
    table3=dict(title='Table 3: four attacks x four defenses, SimCLR and BYOL (CIFAR-10)',
                table='grid', ssl=['simclr', 'byol'], attacks=_four_attacks,
                defenses=['clp', 'ibau', 'sslcleanse', 'bmaiu']),
    search=dict(title='BMAIU, paper trigger vs. searched trigger (SimCLR)', table='grid',
                ssl=['simclr'], attacks=_four_attacks + ['multitarget'],
                defenses=['bmaiu', 'searched_trigger']),
    pl1=dict(title="DECREE's PL1 of the attacked encoders (SimCLR)", table='rows',
             ssl=['simclr'], attacks=_four_attacks, defenses=['decree'], row_label='attack',
             extra=['PL1']),
    table5=dict(title='Table 5: multi-target BadEncoder, ASR / PA per target', table='per_target',
                ssl=['simclr'], attacks=['multitarget'],
                defenses=['clp', 'ibau', 'sslcleanse', 'bmaiu'], metrics=['ASR', 'PA']),
    table1=dict(title='Table 1: ASR per target after unlearning a synthesized trigger ST_i',
                table='per_target', ssl=['simclr'], attacks=['multitarget'],
                defenses=[f'st{i}' for i in range(10)], metrics=['ASR']),
    table2=dict(title='Table 2: ASR per target after unlearning a genuine trigger AT_i',
                table='per_target', ssl=['simclr'], attacks=['multitarget'],
                defenses=[f'at{i}' for i in range(10)], metrics=['ASR']),
    table6=dict(title='Table 6: BMAIU with 1 / 5 / 10 % defense data (BadEncoder, SimCLR)',
                table='rows', ssl=['simclr'], attacks=['badencoder'],
                defenses=['bmaiu_ratio1', 'bmaiu_ratio5', 'bmaiu']),
    table7=dict(title='Table 7: BMAIU against ESTAS on six backbones (SimCLR)', table='rows',
                ssl=['simclr_vgg11', 'simclr_vgg16', 'simclr', 'simclr_resnet34',
                     'simclr_senet18', 'simclr_senet34'],
                attacks=['estas'], defenses=['bmaiu'], row_label='ssl'),
    table8=dict(title='Table 8: BMAIU without one loss term (ESTAS, SimCLR)', table='rows',
                ssl=['simclr'], attacks=['estas'],
                defenses=['bmaiu_no_l0', 'bmaiu_no_l1', 'bmaiu_no_l2', 'bmaiu']),
    fig4=dict(title='Figure 4: BTS and CCS against u1 (ESTAS, SimCLR)', table='rows',
              ssl=['simclr'], attacks=['estas'],
              defenses=['bmaiu'] + [f'bmaiu_u1_{v}' for v in (0.1, 0.5, 2.0, 5.0, 10.0)],
              sweep=dict(key='model.u1', default=1.0, metrics=['BTS', 'CCS']),
              extra=['BTS', 'CCS']),
    fig5=dict(title='Figure 5: BA / ASR / PA against u2 (ESTAS, SimCLR)', table='rows',
              ssl=['simclr'], attacks=['estas'],
              defenses=['bmaiu_no_l1', 'bmaiu'] + [f'bmaiu_u2_{v}' for v in (1.0, 5.0, 20.0, 50.0)],
              sweep=dict(key='model.u2', default=10.0)),
    fig6=dict(title='Figure 6: BA / ASR / PA against u3 (ESTAS, SimCLR)', table='rows',
              ssl=['simclr'], attacks=['estas'],
              defenses=['bmaiu_no_l2', 'bmaiu'] + [f'bmaiu_u3_{v}' for v in (0.5, 2.0, 5.0, 10.0)],
              sweep=dict(key='model.u3', default=1.0)),
)

# Figure 3: t-SNE of 1,000 clean and 1,000 triggered test images, after the attack / BMAIU
figures = dict(tsne=dict(defenses=['bmaiu'], num_images=1000, seed=0))
