"""How strongly does an encoder react to candidate patch triggers?

An *evaluator-side* diagnostic (its candidates include the attacker's trigger, so it is never
part of a defense).  For each encoder and each candidate trigger, on the first N test
images:

* ``shift``: mean cos(f(x + t), f(x)); 1 means the trigger does not move the features;
* ``collapse``: mean pairwise cosine of the triggered features, next to the clean images' own
  (``clean``); a backdoor maps every triggered image to one point, so its collapse nears 1.

Example (docs/results.md, "Trigger response of the encoders")::

    python projects/cpu_study/tools/trigger_response.py \
        configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py \
        clean=work_dirs/cpu_study/simclr/epoch_5.pth \
        badencoder=work_dirs/cpu_study/badencoder/epoch_10.pth
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..')))  # repo root

#: name -> trigger config (32x32 images); the first is BadEncoder's own (the evaluator's preset)
CANDIDATES = OrderedDict([
    ('badencoder (white 10, fixed)', dict(type='PatchTrigger', size=10, pattern='white',
                                          position=(21, 21))),
    ('white 10, random position', dict(type='PatchTrigger', size=10, pattern='white',
                                       position='random')),
    ('white 6, random position', dict(type='PatchTrigger', size=6, pattern='white',
                                      position='random')),
    ('black 10, random position', dict(type='PatchTrigger', size=10, pattern='black',
                                       position='random')),
    ('random 10, at (21, 21)', dict(type='PatchTrigger', size=10, pattern='random',
                                    position=(21, 21), seed=3)),
    ('random 8, random position', dict(type='PatchTrigger', size=8, pattern='random',
                                       position='random', seed=2025)),
    ('random 4, random position (BMAIU default)', dict(type='PatchTrigger', size=4,
                                                      pattern='random', position='random',
                                                      seed=2025)),
])


def main(argv=None) -> None:
    import bmaiu_plugin  # noqa: F401
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from stage_geometry import encode, load_data, parse_encoders, probe_setup

    from bmaiu_plugin.triggers import build_trigger
    from bmaiu_plugin.utils.checkpoint import load_encoder_weights
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help="a config whose model.backbone is the encoders' architecture")
    p.add_argument('encoders', nargs='+', help='NAME=PATH')
    p.add_argument('--n', type=int, default=1000, help='test images')
    args = p.parse_args(argv)
    from bmaiu_plugin.utils.validate import check_number
    check_number('--n', args.n, 1, integer=True)
    cfg = Config.fromfile(args.config)
    norm, _ = probe_setup(cfg)
    x = load_data(1, args.n)['test_x']
    pairs = parse_encoders(args.encoders, min_count=1)
    print('| encoder | trigger | shift | collapse (clean) |\n|---|---|---|---|')
    for name, path in pairs:
        backbone = MODELS.build(cfg.model.backbone)
        load_encoder_weights(backbone, path)
        backbone.eval()
        fx = F.normalize(encode(backbone, norm, x), dim=1)
        clean = (fx @ fx.T).mean().item()
        for cand, tcfg in CANDIDATES.items():
            trig = build_trigger(dict(tcfg, img_size=32))
            gen = torch.Generator().manual_seed(0)
            ft = F.normalize(encode(backbone, norm, trig(x, generator=gen)), dim=1)
            print(f'| {name} | {cand} | {(ft * fx).sum(1).mean():.4f} | '
                  f'{(ft @ ft.T).mean():.4f} ({clean:.4f}) |', flush=True)


if __name__ == '__main__':
    from bmaiu_plugin.apis import run_cli
    sys.exit(run_cli(main))
