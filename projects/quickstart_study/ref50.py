# As ref10.py, with the anchor the mean feature of 50 truck images (the quickstart's setting).
_base_ = ['./ref10.py']
work_dir = 'work_dirs/quickstart_ref50'
_ref = {'model.targets.0.reference.num': 50}
attacks = dict(badencoder=dict(cfg_options=_ref), estas=dict(cfg_options=_ref))
