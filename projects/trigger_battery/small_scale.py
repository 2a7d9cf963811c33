"""Searched-trigger unlearning against the trigger families at the attack tests' scale.

The width-8 encoder of ``tests/attack_setup.py`` (SimCLR, five real CIFAR-10 classes), attacked
by ``configs/attacks/badencoder-<family>_*`` at the tests' budget, then defended by a
searched-trigger config (or the fine-tuning-only control) at the defense test's budget
(``tests/defenses/test_searched_trigger_defense.py``).  One CPU thread.

    PYTHONPATH=.:tests python projects/trigger_battery/small_scale.py \
        --families clean blend patch4 estas multitarget4 \
        --defense configs/searched_trigger/<config>.py --seeds 0 1 2

Prints one line per (family, seed): the suspect's and the defended encoder's BA / ASR / PA.
Seed ``k`` is the attack's and the defense's seed (the clean encoder is the tests' one);
encoders are cached under ``--cache`` (clean and attacked), so further defenses reuse them.
``summarize.py`` turns the lines into the mean / spread table.
"""
import argparse
import json
import os
import os.path as osp
import time

import torch

from attack_setup import (ATTACK, BADENCODER_CONFIG, ESTAS_CONFIG, FAMILY_STEPS, NUM_PRETRAIN,
                          NUM_PROBE, NUM_TEST, PRETRAIN, TINY, attack_metrics, cifar_subset,
                          family_config, run_finetune_attack, simclr_pretrain)
from bmaiu_plugin.registry import MODELS
from defenses.test_searched_trigger_defense import DEFENSE, run_searched_trigger_defense

#: The paper's fine-tuning attacks beside BadEncoder's trigger families: (config, attack
#: steps, the evaluator's trigger preset); the 4-target encoder as in
#: ``tests/attacks/test_attack_asr.py``.
ATTACKS = {
    'badencoder': (BADENCODER_CONFIG, ATTACK['steps'], 'badencoder'),
    'estas': (ESTAS_CONFIG, ATTACK['steps'], 'estas'),
    'multitarget4': ('configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_'
                     'cifar10.py', 240, 'multitarget4'),
}


def attack_of(family: str):
    """``(config, steps, evaluate)`` of a family (``clean``: BadEncoder's trigger, no attack)."""
    if family in ATTACKS or family == 'clean':
        return ATTACKS.get(family, ATTACKS['badencoder'])
    return family_config(family), FAMILY_STEPS[family], f'badencoder-{family}'


def summary(metrics: dict) -> dict:
    """BA / ASR / PA of the evaluator's trigger; for several (the 4-target encoder): ASR and PA
    averaged over the targets, each target's under ``targets``."""
    rows = list(metrics.values())
    out = {k: round(sum(r[k] for r in rows) / len(rows), 2) for k in ('BA', 'ASR', 'PA')}
    if len(rows) > 1:
        out['targets'] = {n: round(r['ASR'], 2) for n, r in metrics.items()}
    return out


def load_encoder(path: str) -> torch.nn.Module:
    enc = MODELS.build(dict(TINY))
    enc.load_state_dict(torch.load(path, weights_only=True))
    return enc


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', default='data/cifar10')
    p.add_argument('--families', nargs='+', default=['blend'])
    p.add_argument('--defense', required=True,
                   help='a searched-trigger config or the fine-tuning-only control')
    p.add_argument('--seeds', type=int, nargs='+', default=[0])
    p.add_argument('--cache', default='work_dirs/trigger_battery_small')
    p.add_argument('--out', default=None, help='append JSON lines here')
    args = p.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.cache, exist_ok=True)
    from types import SimpleNamespace
    train_x, train_y = cifar_subset(args.root, 'train', NUM_PRETRAIN)
    test_x, test_y = cifar_subset(args.root, 'test', NUM_TEST)
    data = SimpleNamespace(root=args.root, probe_x=train_x[:NUM_PROBE],
                           probe_y=train_y[:NUM_PROBE], test_x=test_x, test_y=test_y)
    clean = osp.join(args.cache, 'clean.pth')
    if not osp.isfile(clean):
        torch.save(simclr_pretrain(train_x, **PRETRAIN).state_dict(), clean)
    for family in args.families:
        config, steps, evaluate = attack_of(family)
        for seed in args.seeds:
            # seed k: the attack's (batches) and the defense's (batches, searches) seed
            suspect = clean if family == 'clean' else osp.join(args.cache, f'{family}-s{seed}.pth')
            if not osp.isfile(suspect):
                model = run_finetune_attack(config, clean, args.root,
                                            **dict(ATTACK, steps=steps, seed=seed))
                # written whole (another run may build the same suspect beside this one)
                torch.save(model.backbone.state_dict(), suspect + '.part')
                os.replace(suspect + '.part', suspect)
            before = summary(attack_metrics(load_encoder(suspect), data, evaluate))
            t0 = time.time()
            model = run_searched_trigger_defense(suspect, args.root, config=args.defense,
                                                 **dict(DEFENSE, seed=seed))
            after = summary(attack_metrics(model.backbone, data, evaluate))
            row = dict(family=family, defense=osp.basename(args.defense), seed=seed,
                       before=before, after=after,
                       report=model.defense_report().get('trigger_search'),
                       seconds=round(time.time() - t0))
            print(json.dumps(row), flush=True)
            if args.out:
                with open(args.out, 'a') as f:
                    f.write(json.dumps(row) + '\n')


if __name__ == '__main__':
    main()
