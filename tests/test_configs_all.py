"""Every shipped attack / defense / BMAIU / eval / pipeline-step config loads, finalizes and builds."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.apis import finalize_config
from bmaiu_plugin.triggers import build_trigger
from mmpretrain.registry import MODELS

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(osp.relpath(p, REPO_ROOT) for d in ('attacks', 'bmaiu', 'defenses', 'eval')
                 for p in glob.glob(osp.join(REPO_ROOT, 'configs', d, '*.py')))
CONFIGS.append('configs/bmaiu_simclr_cifar10.py')


@pytest.fixture(scope='module')
def dummy_encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp('enc') / 'encoder.pth'
    torch.save({'w': torch.zeros(1)}, str(path))
    return str(path)


def test_there_are_configs_of_every_kind():
    kinds = {p.split('/')[1] for p in CONFIGS[:-1]}
    assert {'attacks', 'bmaiu', 'defenses', 'eval'} <= kinds
    assert len(CONFIGS) >= 29


@pytest.mark.parametrize('rel', CONFIGS)
def test_config_finalizes_and_builds(rel, dummy_encoder, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # trigger files resolve against data/triggers
    cfg = Config.fromfile(osp.join(REPO_ROOT, rel))
    if 'encoder_checkpoint' in cfg:
        cfg.encoder_checkpoint = dummy_encoder
    cfg = finalize_config(cfg)
    model = MODELS.build(cfg.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    # the evaluator's triggers (attacker's, known to the evaluator only) all build
    for key in ('val_cfg', 'test_cfg'):
        loop = cfg.get(key) or {}
        for t in loop.get('triggers', []):
            if 'htba' in str(t['trigger'].get('pattern', '')) and not osp.isfile(
                    t['trigger']['pattern']):
                pytest.skip('HTBA trigger images not in data/triggers')
            assert build_trigger(t['trigger']) is not None
