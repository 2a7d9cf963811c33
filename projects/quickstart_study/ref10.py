# The attacks' anchor: BadEncoder and ESTAS pulled to the mean feature of 10 truck images instead
# of one (BadEncoder's loss uses the mean reference feature; the number is the attacker's
# choice), on the earlier quickstart's clean encoder (SimCLR 3 epochs on 20,000 images).
#   python tools/pipeline.py projects/quickstart_study/ref10.py --seeds 1 --only 'simclr/*/none'
_base_ = ['../../configs/pipelines/quickstart.py']
work_dir = 'work_dirs/quickstart_ref10'
ssl = dict(simclr=dict(cfg_options={'train_dataloader.dataset.indices': 20000}))
_ref = {'model.targets.0.reference.num': 10}
attacks = dict(
    badencoder=dict(cfg_options=_ref),
    estas=dict(cfg_options=_ref),
)
studies = dict(table3=dict(attacks=['badencoder', 'estas']))
