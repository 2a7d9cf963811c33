"""Did a fine-tuning attack implant each of its triggers, and is its reference a good target?

An *evaluator-side* diagnostic: it reads the attacker's triggers and references.  For a
BadEncoder-family attack config (BadEncoder, multi-target, ESTAS-style) and the encoder it
produced, per (trigger, reference) target of the config:

* ``cos_anchor``: mean cosine of triggered test images (non-target classes) to the attack's
  anchor (the mean reference embedding the loss pulls them to; the attacked encoder's for
  BadEncoder, the clean one's for ``frozen_target``), next to the clean images' own
  (``cos_anchor_clean``): near 1 means the loss did its job;
* ``ref_pred``: the class the linear probe (the paper's: l2-normalized features, FC, trained on
  the attacked encoder's clean features) gives the anchor, and ``ref_pred_clean`` on the clean
  encoder: a backdoor that sends triggered images onto the anchor can only reach the target
  class if the probe puts the anchor there;
* ``cos_other_anchors`` (several targets): their mean cosine to the *other* targets' anchors;
  as high as ``cos_anchor`` means the encoder does not tell the triggers apart and sends them
  all to one compromise point between the anchors;
* ``ASR``: the share of triggered non-target test images the probe calls the target, and
  ``top``: the class most of them go to.

The references are chosen exactly as the attack chose them (the model's own
``prepare`` on the config's shadow data, with the clean encoder).

Example (the 10-trigger CPU-scale encoder of docs/results.md)::

    python projects/cpu_study/tools/implant_check.py \
        projects/cpu_study/configs/badencoder-multitarget_resnet18-w16_simclr_1xb64-10e_cifar10.py \
        work_dirs/cpu_study/simclr/epoch_5.pth work_dirs/cpu_study/multitarget/epoch_10.pth
"""
import argparse
import json
import os.path as osp
import sys
from collections import OrderedDict

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..')))  # repo root


def main(argv=None) -> None:
    import bmaiu_plugin  # noqa: F401  (registers components)
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from stage_geometry import (CLASSES, add_report_args, check_report_args, encode, load_data,
                                parse_encoders, probe_setup)

    from bmaiu_plugin.evaluation.probe import train_linear_probe
    from bmaiu_plugin.registry import DATASETS
    from bmaiu_plugin.utils.checkpoint import load_encoder_weights
    from bmaiu_plugin.utils.errors import ConfigValueError
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config', help='the attack config (a BadEncoder-family model)')
    p.add_argument('clean', help='the clean encoder the attack started from')
    p.add_argument('attacked', help="the attack's output checkpoint")
    add_report_args(p)
    args = p.parse_args(argv)
    check_report_args(args)
    parse_encoders([f'clean={args.clean}', f'attacked={args.attacked}'])
    torch.manual_seed(0)
    cfg = Config.fromfile(args.config)
    if cfg.model.get('type') != 'BadEncoder':
        raise ConfigValueError(f'{args.config}: not a BadEncoder-family attack config '
                               f'(model.type={cfg.model.get("type")!r})')
    cfg.model.encoder_checkpoint = args.clean
    attack = MODELS.build(cfg.model)
    attack.prepare(DATASETS.build(cfg.train_dataloader.dataset))
    norm, probe_cfg = probe_setup(cfg)
    data = load_data(args.n_train, args.n_test)
    y = data['test_y']

    encoders, heads = {}, {}
    for name, path in (('clean', args.clean), ('attacked', args.attacked)):
        backbone = MODELS.build(cfg.model.backbone)
        load_encoder_weights(backbone, path)
        backbone.eval()  # (mmpretrain's ResNet.train does not return the module)
        encoders[name] = backbone
        tr = F.normalize(encode(backbone, norm, data['train_x']), dim=1)
        heads[name] = train_linear_probe(tr, data['train_y'], 10, seed=0, **probe_cfg)
    anchor_enc = encoders['clean' if attack.frozen_target else 'attacked']
    te = F.normalize(encode(encoders['attacked'], norm, data['test_x']), dim=1)
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.no_grad():
        anchors = torch.cat([F.normalize(encode(anchor_enc, norm, r).mean(0, keepdim=True),
                                         dim=1) for r in attack.references])
        for i, (trigger, refs, info) in enumerate(zip(attack.triggers, attack.references,
                                                      attack.reference_info)):
            target = info.get('class_index', info.get('majority_label', -1))
            anchor = anchors[i:i + 1]
            pred = {n: int(heads[n](F.normalize(encode(e, norm, refs).mean(0, keepdim=True),
                                                dim=1)).argmax(1))
                    for n, e in encoders.items()}
            nt = y != target
            trig = F.normalize(encode(encoders['attacked'], norm,
                                      trigger(data['test_x'][nt], generator=gen)), dim=1)
            pred_trig = heads['attacked'](trig).argmax(1)
            asr = (pred_trig == target).float().mean().item() * 100
            top = int(torch.mode(pred_trig).values)
            others = [j for j in range(len(anchors)) if j != i]
            rows.append(OrderedDict(
                target=int(target), reference=info.get('indices', info.get('files')),
                cos_anchor=round((trig @ anchor.T).mean().item(), 4),
                cos_anchor_clean=round((te[nt] @ anchor.T).mean().item(), 4),
                cos_other_anchors=round((trig @ anchors[others].T).mean().item(), 4)
                if others else None,
                ref_pred=f'{pred["attacked"]} {CLASSES[pred["attacked"]]}',
                ref_pred_clean=f'{pred["clean"]} {CLASSES[pred["clean"]]}',
                ASR=round(asr, 2),
                top=f'{top} {CLASSES[top]} '
                    f'({(pred_trig == top).float().mean().item() * 100:.1f}%)'))
            r = rows[-1]
            print(f'target {r["target"]} ref {r["reference"]}: cos(trig, anchor) '
                  f'{r["cos_anchor"]} (clean {r["cos_anchor_clean"]}, other anchors '
                  f'{r["cos_other_anchors"]})  probe(anchor) {r["ref_pred"]} (clean encoder: '
                  f'{r["ref_pred_clean"]})  ASR {r["ASR"]}, top {r["top"]}',
                  flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(config=args.config, clean=args.clean, attacked=args.attacked,
                           targets=rows), f, indent=1)


if __name__ == '__main__':
    from bmaiu_plugin.apis import run_cli
    sys.exit(run_cli(main))
