# The quickstart over three seeds, with the searched-trigger recipe twice: as the quickstart
# runs it (the random-place patch and the fixed-place windows) and with the patch alone, at the
# same budget (4 epochs; searches of 200 + 50 steps).  docs/results.md, "Quickstart pipeline".
#   python tools/pipeline.py projects/quickstart_study/seeds.py --seeds 0 1 2
_base_ = ['../../configs/pipelines/quickstart.py']
work_dir = 'work_dirs/quickstart_seeds'

defenses = dict(
    searched_patch=dict(
        name='Searched trigger (patch only)', tool='train',
        config='configs/searched_trigger/searched-trigger_resnet18-w16_1xb64-10e_cifar10.py',
        cfg_options={'train_cfg.max_epochs': 4, 'train_cfg.val_interval': 4,
                     'model.search.steps': 200, 'model.restart_steps': 50}),
)
studies = dict(
    table3=dict(defenses=['clp', 'bmaiu', 'searched_patch', 'searched_trigger', 'finetune']),
)
figures = dict(tsne=None)
estimates = {'*/*/searched_patch': 143}
