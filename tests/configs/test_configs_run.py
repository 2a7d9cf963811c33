"""Every shipped config runs, not only builds: one training iteration per epoch (one epoch; two
for BMAIU's implant + unlearn) and its evaluation, or the evaluation alone for the configs the
test tool runs (CLP, DECREE, the probes), in-process on the CPU, on tiny synthetic data: a fake
CIFAR-10 folder, a fake ImageNet-100 image folder and fake HTBA trigger images.

The full-scale configs (500-epoch SSL, paper-width attacks and defenses, EfficientNetV2-S on
ImageNet-100 at 224 px) and their ``-devaug`` twins (device views, bf16 autocast,
channels-last) run as shipped; only the sizes change (epochs, batch, subset, search steps),
so a user's first GPU run is not the first time a config executes.
"""
import glob
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.apis import finalize_config

from conftest import REPO_ROOT, write_fake_cifar

#: Every runnable config (not the `_base_` parts, not the pipeline configs).
RUNNABLE = sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(
    osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
    if not {'_base_', 'pipelines'} & set(p.split(os.sep)))
#: Where a config names a step budget that the tiny run cuts (key, value).
SMALL_BUDGETS = {'steps': 2, 'restart_steps': 2, 'rounds': 2, 'steps_per_round': 2,
                 'max_steps': 2, 'max_images': 16, 'images_per_cluster': 4, 'check_images': 8,
                 'kmeans_n_init': 1, 'num_clusters': 2, 'batch_size': 8, 'epochs': 1, 'K': 1}
BATCH = 4


@HOOKS.register_module(force=True)
class OneIterPerEpoch(Hook):
    """Cut every training epoch to its first batch (the loop's iteration counts, and so the
    schedulers, stay those of the real run)."""

    priority = 'VERY_LOW'

    def before_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if not isinstance(loop.dataloader, _FirstBatch):
            loop.dataloader = _FirstBatch(loop.dataloader)


class _FirstBatch:
    def __init__(self, loader):
        self.loader = loader

    def __iter__(self):
        yield next(iter(self.loader))

    def __len__(self):
        return 1

    def __getattr__(self, name):
        return getattr(self.loader, name)


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """``(cifar_root, imagenet_root, trigger_root)`` of synthetic data."""
    from PIL import Image
    root = tmp_path_factory.mktemp('tiny')
    cifar = root / 'cifar10'
    write_fake_cifar(str(cifar), per_train_batch=200, n_test=40)
    rng = np.random.default_rng(0)
    imagenet = root / 'imagenet100'
    for split in ('train', 'val'):
        for c in range(2):
            d = imagenet / split / f'n{c:08d}'
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(
                    d / f'img_{i}.JPEG')
    triggers = root / 'triggers' / 'htba'
    triggers.mkdir(parents=True)
    for k in range(10, 20):
        Image.fromarray(rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)).save(
            triggers / f'trigger_{k}.png')
    return str(cifar), str(imagenet), str(root / 'triggers')


def _shrink(node, imagenet_root: str):
    """Tiny sizes everywhere in a config subtree: dataloader batches and workers, probe and
    test subsets, search budgets; the ImageNet folder replaced by the synthetic one."""
    if isinstance(node, dict):
        if 'batch_size' in node and 'dataset' in node:  # a dataloader
            node['batch_size'] = BATCH
            node['num_workers'] = 0
            node['persistent_workers'] = False
        # (any other batch_size: a search's or detector's own, cut by SMALL_BUDGETS)
        if node.get('type') == 'WindowPatchSearch':  # 4 windows: two images each in 8
            node.update(size=16, stride=16)
        if node.get('type') in ('CustomDataset', 'ImageNet') and 'data_root' in node:
            node['data_root'] = imagenet_root
        for key, small in SMALL_BUDGETS.items():
            v = node.get(key, 0)
            if key in node and (v is None or not isinstance(v, bool) and isinstance(v, int)
                                and v > small):
                node[key] = small  # (max_steps None: DECREE's epochs without a cap)
        for v in node.values():
            _shrink(v, imagenet_root)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _shrink(v, imagenet_root)


def _is_train(cfg) -> bool:
    return bool(cfg.get('train_dataloader')) and bool(cfg.get('train_cfg'))


def _subset(cfg, loop_key: str, n: int) -> None:
    """The first ``n`` images of the probe's training set and of the evaluation split."""
    loop = cfg.get(loop_key)
    if isinstance(loop, dict) and isinstance(loop.get('probe_dataloader'), dict):
        loop.probe_dataloader.dataset.indices = 2 * n
    dl = cfg.get(loop_key.replace('_cfg', '_dataloader'))
    if isinstance(dl, dict) and isinstance(dl.get('dataset'), dict):
        dl.dataset.indices = n


def _encoder_file(cfg, tmp_path) -> str:
    """A real encoder checkpoint of the config's backbone (random weights)."""
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    backbone = MODELS.build(cfg.model.backbone)
    path = str(tmp_path / 'encoder.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in
                               backbone.state_dict().items()}}, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize('rel', RUNNABLE)
def test_config_runs_one_iteration_and_evaluates(rel, tiny_data, tmp_path, monkeypatch):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    cifar, imagenet, triggers = tiny_data
    monkeypatch.setenv('BMAIU_DATA_ROOT', cifar)
    monkeypatch.setenv('BMAIU_TRIGGER_ROOT', triggers)
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(osp.join(REPO_ROOT, rel))
    train = _is_train(cfg)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, max_keep_ckpts=1)
    cfg.default_hooks.pop('visualization', None)
    _shrink(cfg._cfg_dict, imagenet)
    for key in ('val_cfg', 'test_cfg'):
        _subset(cfg, key, 8)
    if 'encoder_checkpoint' in cfg:
        cfg.encoder_checkpoint = _encoder_file(cfg, tmp_path)
    if train:
        stages = [h for h in cfg.get('custom_hooks', []) if 'implant_epochs' in h]
        for h in stages:
            h['implant_epochs'] = 1
        epochs = 2 if stages else 1
        if 'max_iters' in cfg.train_cfg:
            cfg.train_cfg.update(max_iters=1, val_interval=1)
        else:
            cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
        cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
            dict(type='OneIterPerEpoch')]
    cfg = finalize_config(cfg)
    init_default_scope('mmpretrain')
    runner = Runner.from_cfg(cfg)
    if train:
        runner.train()
    else:
        model = runner.model
        if getattr(model, 'encoder_checkpoint', None):
            model.init_weights()  # as tools/test.py: Runner.test() does not
        runner.test()
    metrics = json.load(open(osp.join(cfg.work_dir, 'metrics.json')))
    values = [v for v in _numbers(metrics)]
    assert values and all(np.isfinite(values)), metrics
    if 'BA' in metrics or any(isinstance(v, dict) and 'BA' in v for v in metrics.values()):
        bas = [metrics['BA']] if 'BA' in metrics else [v['BA'] for v in metrics.values()
                                                      if isinstance(v, dict) and 'BA' in v]
        assert all(0. <= b <= 100. for b in bas), metrics


def _numbers(node):
    if isinstance(node, bool):
        return
    if isinstance(node, (int, float)):
        yield float(node)
    elif isinstance(node, dict):
        for v in node.values():
            yield from _numbers(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _numbers(v)


def test_every_config_folder_is_covered():
    folders = {rel.split('/')[1] for rel in RUNNABLE if rel.count('/') > 1}
    assert folders == {'attacks', 'backbones', 'bmaiu', 'defenses', 'eval', 'searched_trigger',
                       'selfsup'}
    assert 'configs/selfsup/simclr_efficientnetv2-s_1xb256-coslr-200e_imagenet100.py' in RUNNABLE
    assert 'configs/bmaiu_simclr_cifar10.py' in RUNNABLE
