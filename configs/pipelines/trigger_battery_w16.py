# Trigger-family battery: every fine-tuning attack family x every defense, three seeds, with the
# residual-backdoor audit, at the quickstart's scale (docs/pipeline.md; docs/attacks.md,
# "Trigger-family battery").
#   mim run bmaiu_plugin pipeline configs/pipelines/trigger_battery_w16.py [--work-dir DIR]
#   (--seeds 0 for one replicate; --only 'simclr/badencoder-blend/*' for one family)
# Data: real CIFAR-10 from $BMAIU_DATA_ROOT; HTBA triggers from $BMAIU_TRIGGER_ROOT.
#
# Scale: the quickstart's (_base_): a width-16 SimCLR encoder (3 epochs on 10,000 images, views
# on the device), every attack 5 epochs of fine-tuning on 10 % shadow data at batch 64 with
# every target anchored on 50 reference images, the defenses at the quickstart's budgets; probe
# on 5,000 training / 2,000 test images.
# Attacks: BadEncoder's fine-tuning (target truck) with each trigger family -- patch (HTBA
# 10x10 at a fixed place; 4x4 seeded pattern in a corner; 14x14 at a random place), blended
# noise, a WaNet-style warp field, CTRL's frequency trigger -- plus DRUPE (built to evade
# trigger inversion), ESTAS and the four-trigger multi-target encoder.  The defenses never see the trigger; the evaluator knows it.
# Defenses: CLP, I-BAU, SSL-Cleanse, paper-BMAIU, the searched-trigger recipe (the patch with
# fixed-place windows, and with the whole search space: windows, masks, additive, warp) and the
# fine-tuning-only control (the searched recipe's data, epochs and clean-consistency loss,
# no trigger terms: what any fine-tuning removes).
# Audit (bmaiu_plugin/evaluation/audit.py, its default budget): every clean and attacked encoder
# and every defended one is audited by trigger inversion; the tables get `audit ASR` and
# `audit collapse` columns next to the clean encoder's.
# Cost: 3 x 73 steps, each replicate about six times the quickstart's plus the audit: for a GPU or
# a long CPU run (`estimates` below are guesses from the quickstart's step times, for the live
# ETA).  Warp and CTRL did not take with 5 attack epochs at this scale (docs/attacks.md): their
# rows show whether a defense has anything to remove.
_base_ = ['./quickstart.py']
title = 'Trigger-family battery: fine-tuning attacks x defenses (quickstart scale, 3 seeds)'
work_dir = 'work_dirs/trigger_battery_w16'
seeds = [0, 1, 2]

_audit = {'val_cfg.audit.enable': True, 'test_cfg.audit.enable': True}
options = dict(
    all=_audit,
    # the suspect is the attack step's own encoder, audited there
    defense={'val_cfg.audit.encoders': ['defended'], 'test_cfg.audit.encoders': ['defended']},
)

_family = 'configs/attacks/badencoder-{}_resnet18-w16_simclr_1xb256-10e_cifar10.py'
attacks = dict(
    drupe=dict(
        name='DRUPE', type='finetune', evaluate='drupe',
        config='configs/attacks/drupe_resnet18-w16_simclr_1xb256-10e_cifar10.py'),
    multitarget4=dict(
        name='Multi-target (4)', type='finetune', evaluate='multitarget4',
        config='configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_cifar10.py',
        # every target's anchor on 50 images (the quickstart's attack options set target 0's)
        cfg_options={f'model.targets.{i}.reference.num': 50 for i in range(1, 4)}),
    **{f'badencoder-{f}': dict(name=f'BadEncoder {label}', type='finetune',
                               evaluate=f'badencoder-{f}', config=_family.format(f))
       for f, label in (('patch4', 'patch 4x4 fixed'), ('patch14', 'patch 14x14 random'),
                        ('blend', 'blend'), ('warp', 'warp'), ('ctrl', 'CTRL frequency'))},
)

defenses = dict(
    ibau=dict(name='I-BAU', tool='train',
              config='configs/defenses/ibau_resnet18-w16_1xb256-5e_cifar10.py'),
    searched_space=dict(
        name='Searched trigger (search space)', tool='train',
        config='configs/searched_trigger/'
               'searched-trigger-ensemble_resnet18-w16_1xb64-10e_cifar10.py',
        cfg_options={'train_cfg.max_epochs': 4, 'train_cfg.val_interval': 4,
                     'model.search.steps': 200, 'model.restart_steps': 50}),
    sslcleanse=dict(name='SSL-Cleanse', tool='train',
                    config='configs/defenses/sslcleanse_resnet18-w16_1xb256-20e_cifar10.py',
                    cfg_options={'train_cfg.max_epochs': 4, 'train_cfg.val_interval': 4}),
)

studies = dict(
    _delete_=True,
    battery=dict(
        title='Trigger families x defenses: BA / ASR / PA and the audit (mean ± sd, 3 seeds)',
        table='grid', ssl=['simclr'],
        attacks=['badencoder', 'badencoder-patch4', 'badencoder-patch14', 'badencoder-blend',
                 'badencoder-warp', 'badencoder-ctrl', 'drupe', 'estas', 'multitarget4'],
        defenses=['clp', 'ibau', 'sslcleanse', 'bmaiu', 'searched_trigger', 'searched_space',
                  'finetune']),
)

figures = dict(tsne=None)

estimates = {
    '*/clean/none': 330,
    '*/*/none': 180,
    '*/*/clp': 85,
    '*/*/ibau': 240,
    '*/*/sslcleanse': 300,
    '*/*/bmaiu': 150,
    '*/*/searched_trigger': 245,
    '*/*/searched_space': 600,
    '*/*/finetune': 110,
}
