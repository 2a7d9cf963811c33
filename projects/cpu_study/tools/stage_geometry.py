"""Where do the two BMAIU stages move the encoder, and where do they send the attacker's trigger?

An *evaluator-side* diagnostic (it reads the attacker's trigger, so it is never part of a
defense).  Given a chain of encoders ``f0 -> f1 -> f2`` (suspect, implanted, defended), it
reports:

* **weight geometry**: the norm of each step ``d_i = theta_i - theta_{i-1}`` per top-level
  block, the cosine between consecutive steps (``cos(d1, d2) = -1`` means stage 2 walks stage 1
  back) and how far the last encoder is from the first relative to the path length;
* **where the attacker's trigger goes**: with the paper's probe (l2-normalized features, FC, 10
  epochs) trained on each encoder's clean features, the share of triggered non-target test
  images predicted as each class; and the mean cosine of triggered features to each class's
  clean mean feature (the attacker's target and the class the largest share goes to).

Example (the study's ``long_implant_trigger8`` chain)::

    python projects/cpu_study/tools/stage_geometry.py \
        configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py \
        f0=work_dirs/cpu_study/badencoder/epoch_10.pth \
        f1=work_dirs/cpu_study/f1_long_implant_trigger8.pth \
        f2=work_dirs/cpu_study/bmaiu_long_implant_trigger8/epoch_30.pth \
        --attack badencoder --out work_dirs/cpu_study/geometry_long_implant_trigger8.json

Encoders are read as tensors only (any form ``load_encoder_weights`` accepts: an mmengine
checkpoint with ``backbone.`` keys, a plain state dict, ``.safetensors``).
"""
import argparse
import json
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..')))  # repo root

CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship',
           'truck')


def block_of(name: str) -> str:
    """Top-level block of a backbone parameter name (``layer3.1.conv2.weight`` -> ``layer3``)."""
    head = name.split('.')[0]
    return head if head.startswith('layer') else 'stem'


def weight_geometry(states: List[Dict[str, torch.Tensor]], names: List[str]) -> dict:
    """Per-block step norms and consecutive-step cosines of a chain of state dicts.

    Only floating-point parameters that every state shares are compared (BN running statistics
    included: they are part of what a stage changes when BN is updated).
    """
    keys = [k for k, v in states[0].items()
            if v.is_floating_point() and all(k in s for s in states[1:])]
    steps = [{k: (states[i + 1][k].float() - states[i][k].float()).flatten() for k in keys}
             for i in range(len(states) - 1)]
    blocks = sorted({block_of(k) for k in keys}, key=lambda b: (b != 'stem', b))
    out = OrderedDict()
    for blk in blocks + ['all']:
        ks = [k for k in keys if blk == 'all' or block_of(k) == blk]
        vecs = [torch.cat([s[k] for k in ks]) for s in steps]
        row = OrderedDict()
        for i, v in enumerate(vecs):
            row[f'|{names[i]}->{names[i + 1]}|'] = round(v.norm().item(), 4)
        for i in range(len(vecs) - 1):
            row[f'cos({names[i]}->{names[i + 1]}, {names[i + 1]}->{names[i + 2]})'] = round(
                F.cosine_similarity(vecs[i], vecs[i + 1], dim=0).item(), 4)
        if len(vecs) > 1:
            total = torch.stack(vecs).sum(0).norm().item()
            path = sum(v.norm().item() for v in vecs)
            row[f'|{names[0]}->{names[-1]}| / path'] = round(total / max(path, 1e-12), 4)
        out[blk] = row
    return out


@torch.no_grad()
def encode(backbone, norm, imgs: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Pooled features of ``uint8`` images, ``(N, D)``, on the CPU."""
    from bmaiu_plugin.utils.data import encode_batched
    return encode_batched(backbone, norm, imgs, batch_size=batch)


def trigger_destinations(backbone, norm, data: dict, trigger, target: int, probe_cfg: dict,
                         seed: int = 0) -> dict:
    """Probe predictions and class-mean cosines of triggered non-target test images."""
    from bmaiu_plugin.evaluation.probe import train_linear_probe
    tr = F.normalize(encode(backbone, norm, data['train_x']), dim=1)
    te = F.normalize(encode(backbone, norm, data['test_x']), dim=1)
    gen = torch.Generator().manual_seed(seed)
    trig = F.normalize(encode(backbone, norm, trigger(data['test_x'], generator=gen)), dim=1)
    head = train_linear_probe(tr, data['train_y'], 10, seed=seed, **probe_cfg)
    y = data['test_y']
    nt = y != target
    pred = head(trig[nt]).argmax(1)
    share = torch.bincount(pred, minlength=10).float() / max(int(nt.sum()), 1) * 100
    means = F.normalize(torch.stack([te[y == c].mean(0) for c in range(10)]), dim=1)
    cos_to = (trig[nt] @ means.T).mean(0)
    clean_cos_to = (te[nt] @ means.T).mean(0)
    top = int(share.argmax())
    return OrderedDict(
        BA=round(100 * (head(te).argmax(1) == y).float().mean().item(), 2),
        ASR=round(share[target].item(), 2),
        top_class=f'{top} {CLASSES[top]}', top_share=round(share[top].item(), 2),
        share={CLASSES[c]: round(share[c].item(), 2) for c in range(10)},
        cos_trig_to_target=round(cos_to[target].item(), 4),
        cos_clean_to_target=round(clean_cos_to[target].item(), 4),
        cos_trig_to_top=round(cos_to[top].item(), 4),
        cos_clean_to_top=round(clean_cos_to[top].item(), 4),
        trigger_shift=round(F.cosine_similarity(trig[nt], te[nt], dim=1).mean().item(), 4))


def load_data(n_train: int, n_test: int) -> dict:
    """CIFAR-10 uint8 arrays: the probe's train images and the test images."""
    from bmaiu_plugin.datasets.cifar import BackdoorCIFAR10
    from bmaiu_plugin.datasets.reference import dataset_arrays
    out = {}
    for split, n in (('train', n_train), ('test', n_test)):
        ds = BackdoorCIFAR10(split=split, check_md5=False, pipeline=[])
        out[f'{split}_x'], out[f'{split}_y'] = dataset_arrays(ds, limit=n)
    return out


def parse_encoders(items: List[str], min_count: int = 2) -> List[Tuple[str, str]]:
    """``NAME=PATH`` arguments as pairs, each file checked to exist."""
    from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError
    from bmaiu_plugin.utils.validate import clip
    pairs = []
    for it in items:
        if '=' not in it:
            raise ConfigValueError(f'encoder {clip(it)}: write NAME=PATH')
        name, path = it.split('=', 1)
        if not osp.isfile(path):
            raise CheckpointError(f'encoder {name}: {path} not found')
        pairs.append((name, path))
    if len(pairs) < min_count:
        raise ConfigValueError(f'give at least {min_count} encoders as NAME=PATH'
                               + (' (a chain f0=... f1=... [f2=...])' if min_count > 1 else ''))
    return pairs


def add_report_args(parser: argparse.ArgumentParser) -> None:
    """The probe-size and report options the evaluator-side diagnostics share."""
    parser.add_argument('--n-train', type=int, default=10000, help='probe training images')
    parser.add_argument('--n-test', type=int, default=10000)
    parser.add_argument('--out', help='JSON file to write (never overwritten)')


def check_out(path) -> None:
    """Refuse to overwrite an existing report."""
    from bmaiu_plugin.utils.errors import ConfigValueError
    if path and osp.exists(path):
        raise ConfigValueError(f'{path} exists; not overwriting it')


def check_report_args(args) -> None:
    """The report options of :func:`add_report_args`: image counts >= 1, ``--out`` new."""
    from bmaiu_plugin.utils.validate import check_number
    check_number('--n-train', args.n_train, 1, integer=True)
    check_number('--n-test', args.n_test, 1, integer=True)
    check_out(args.out)


def probe_setup(cfg) -> Tuple[torch.nn.Module, dict]:
    """The config's pixel normalizer and the paper's probe settings of its evaluator."""
    from bmaiu_plugin.models.features import PixelNormalizer
    dp = cfg.model.get('data_preprocessor', {})
    norm = PixelNormalizer(dp.get('mean', (125.307, 122.961, 113.8575)),
                           dp.get('std', (51.5865, 50.847, 51.255)))
    ev = cfg.get('val_evaluator', {})
    return norm, dict(epochs=ev.get('epochs', 10), batch_size=ev.get('batch_size', 64),
                      lr=ev.get('lr', 0.1))


def main(argv=None) -> None:
    import bmaiu_plugin  # noqa: F401  (registers components)
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    from bmaiu_plugin.evaluation.presets import attack_triggers
    from bmaiu_plugin.triggers import build_trigger
    from bmaiu_plugin.utils.checkpoint import load_encoder_weights
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='a config whose model.backbone is the encoders\' architecture')
    p.add_argument('encoders', nargs='+', help='NAME=PATH, in chain order (f0 first)')
    p.add_argument('--attack', default='badencoder', help='evaluator preset of the attack')
    add_report_args(p)
    args = p.parse_args(argv)
    check_report_args(args)
    torch.manual_seed(0)
    pairs = parse_encoders(args.encoders)
    cfg = Config.fromfile(args.config)
    norm, probe_cfg = probe_setup(cfg)
    preset = attack_triggers(args.attack)[0]
    trigger = build_trigger(preset['trigger'])
    data = load_data(args.n_train, args.n_test)
    states, report = [], OrderedDict(attack=args.attack, target=preset['target'],
                                     encoders=OrderedDict())
    for name, path in pairs:
        backbone = MODELS.build(cfg.model.backbone)
        load_encoder_weights(backbone, path)
        backbone.eval()
        states.append({k: v.detach().clone() for k, v in backbone.state_dict().items()})
        report['encoders'][name] = trigger_destinations(backbone, norm, data, trigger,
                                                        preset['target'], probe_cfg)
        r = report['encoders'][name]
        print(f'{name}: BA {r["BA"]} ASR {r["ASR"]} top {r["top_class"]} ({r["top_share"]}%) '
              f'cos(trig, target) {r["cos_trig_to_target"]} (clean {r["cos_clean_to_target"]}) '
              f'shift {r["trigger_shift"]}', flush=True)
    report['weights'] = weight_geometry(states, [n for n, _ in pairs])
    for blk, row in report['weights'].items():
        print(blk, dict(row))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=1)


if __name__ == '__main__':
    from bmaiu_plugin.apis import run_cli
    sys.exit(run_cli(main))
