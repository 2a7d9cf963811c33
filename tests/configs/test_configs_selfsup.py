"""Self-supervised pre-training configs (configs/selfsup, configs/backbones): load, build, loss."""
import glob
import math
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

import bmaiu_plugin  # noqa: F401  (registration)
from mmpretrain.registry import DATASETS, MODELS

from conftest import REPO_ROOT
CONFIG_DIRS = ('configs/selfsup', 'configs/backbones')
CONFIGS = sorted(osp.relpath(p, REPO_ROOT) for d in CONFIG_DIRS
                 for p in glob.glob(osp.join(REPO_ROOT, d, '*.py')))
SELFSUP = 'configs/selfsup'
SIMCLR = f'{SELFSUP}/simclr_resnet18_1xb512-coslr-500e_cifar10.py'
BYOL = f'{SELFSUP}/byol_resnet18_1xb512-coslr-500e_cifar10.py'
MOCOV2 = f'{SELFSUP}/mocov2_resnet18_1xb512-coslr-500e_cifar10.py'
IMAGENET100 = f'{SELFSUP}/simclr_efficientnetv2-s_1xb256-coslr-200e_imagenet100.py'
#: Architectures of the paper's Table 7 (ResNet-18 is the main config).
TABLE7 = {
    'configs/backbones/simclr_vgg11_1xb512-coslr-500e_cifar10.py': ('VGG_CIFAR', 11),
    'configs/backbones/simclr_vgg16_1xb512-coslr-500e_cifar10.py': ('VGG_CIFAR', 16),
    'configs/backbones/simclr_resnet34_1xb512-coslr-500e_cifar10.py': ('ResNet_CIFAR', 34),
    'configs/backbones/simclr_senet18_1xb512-coslr-500e_cifar10.py': ('SENet_CIFAR', 18),
    'configs/backbones/simclr_senet34_1xb512-coslr-500e_cifar10.py': ('SENet_CIFAR', 34),
}
# {algo}_{backbone}_{NxbM-recipe}_{data}.py
NAME_RE = re.compile(r'^[a-z0-9]+_[a-z0-9.\-]+_\d+xb\d+(-[a-z0-9.]+)*_[a-z0-9]+\.py$')


def _load(rel: str) -> Config:
    return Config.fromfile(osp.join(REPO_ROOT, rel))


def _model_cfg(cfg: Config) -> dict:
    """``cfg.model`` with the data preprocessor the runner would inject."""
    model = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return model


def test_expected_configs_exist():
    for rel in [SIMCLR, BYOL, MOCOV2, IMAGENET100, *TABLE7]:
        assert rel in CONFIGS, rel


def test_config_names_follow_convention_and_are_unique():
    names = [osp.basename(p) for p in CONFIGS]
    for name in names:
        assert NAME_RE.match(name), name
    every = [osp.basename(p) for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                                                recursive=True)
             if '_base_' not in p.split(os.sep)]
    dupes = {n for n in every if every.count(n) > 1}
    assert not dupes, f'config basenames must be unique across configs/: {sorted(dupes)}'


@pytest.mark.parametrize('rel', CONFIGS)
def test_config_loads_and_model_builds(rel):
    cfg = _load(rel)
    assert cfg.default_scope == 'mmpretrain'
    assert 'bmaiu_plugin' in cfg.custom_imports['imports']
    assert cfg.train_cfg.max_epochs == cfg.param_scheduler[-1]['end']
    assert cfg.val_cfg['type'] == 'BackdoorProbeLoop'  # BA is reported at the end
    model = MODELS.build(_model_cfg(cfg))
    assert type(model).__name__ == cfg.model.type
    # the neck's input width matches the backbone's output
    model.eval()
    with torch.no_grad():
        feat = model.backbone(torch.rand(1, 3, 32, 32))
    assert isinstance(feat, tuple) and len(feat) == 1
    in_ch = cfg.model.neck.in_channels
    assert feat[-1].shape[1] == in_ch
    with torch.no_grad():
        z = model.neck(feat)[0]
    assert z.shape[0] == 1


def test_cifar_configs_normalize_with_the_shared_mean_std():
    norm = _load('configs/_base_/datasets/cifar10_mean_std.py')
    for rel in CONFIGS:
        cfg = _load(rel)
        if 'cifar10' in rel:
            assert cfg.data_preprocessor.mean == norm.cifar10_mean, rel
            assert cfg.data_preprocessor.std == norm.cifar10_std, rel
            assert cfg.data_preprocessor.to_rgb is False, rel


@pytest.mark.parametrize('rel,backbone', sorted(TABLE7.items()))
def test_table7_configs_swap_only_the_backbone(rel, backbone):
    cfg, main = _load(rel), _load(SIMCLR)
    assert (cfg.model.backbone.type, cfg.model.backbone.depth) == backbone
    assert cfg.model.neck == main.model.neck and cfg.model.head == main.model.head
    assert cfg.optim_wrapper == main.optim_wrapper
    assert cfg.train_cfg == main.train_cfg
    assert cfg.train_dataloader == main.train_dataloader


def test_byol_and_mocov2_recipes():
    byol = _load(BYOL)
    assert byol.model.type == 'BYOL'
    assert math.isclose(1 - byol.model.base_momentum, 0.996)
    assert (byol.model.neck.in_channels, byol.model.neck.hid_channels,
            byol.model.neck.out_channels) == (512, 4096, 256)
    assert byol.model.head.type == 'LatentPredictHead'
    assert byol.model.head.loss.type == 'CosineSimilarityLoss'
    moco = _load(MOCOV2)
    assert moco.model.type == 'MoCo' and moco.model.neck.type == 'MoCoV2Neck'
    assert math.isclose(1 - moco.model.momentum, 0.99)
    assert moco.model.head.temperature == 0.2
    assert moco.model.feat_dim == moco.model.neck.out_channels
    for rel in CONFIGS:
        cfg = _load(rel)
        if cfg.model.type == 'MoCo':  # the whole batch's keys are enqueued at once
            assert cfg.model.queue_len % cfg.train_dataloader.batch_size == 0, rel
            assert cfg.model.feat_dim == cfg.model.neck.out_channels, rel
    for cfg in (byol, moco):
        assert cfg.optim_wrapper.optimizer.type == 'SGD'
        assert cfg.optim_wrapper.optimizer.lr == 0.06
        assert cfg.train_dataloader.batch_size == 512 and cfg.train_cfg.max_epochs == 500


# ----------------------------------------------------------------------------- loss forward
def _two_view_batch(cfg: Config, root: str, n: int) -> dict:
    """``n`` samples of the config's real two-view train pipeline on a fake CIFAR folder."""
    ds_cfg = cfg.train_dataloader.dataset.copy()
    ds_cfg.update(data_root=root, indices=n)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):  # the pipeline's transforms
        dataset = DATASETS.build(ds_cfg)
    return default_collate([dataset[i] for i in range(n)])


@pytest.mark.parametrize('rel,extra', [(SIMCLR, {}), (BYOL, {}),
                                       (MOCOV2, dict(queue_len=8))])
def test_loss_forward_on_two_view_batch(rel, extra, fake_cifar):
    root, _ = fake_cifar
    torch.manual_seed(0)
    cfg = _load(rel)
    cfg.model.update(extra)
    model = MODELS.build(_model_cfg(cfg))
    model.train()
    batch = _two_view_batch(cfg, root, n=4)
    assert isinstance(batch['inputs'], list) and len(batch['inputs']) == 2
    assert batch['inputs'][0].shape == (4, 3, 32, 32)
    data = model.data_preprocessor(batch, training=True)
    assert data['inputs'][0].dtype == torch.float32
    # BYOL's cosine EMA reads the schedule length from the MessageHub (the runner sets it)
    MessageHub.get_current_instance().update_info('max_iters', 10)
    losses = model(data['inputs'], data['data_samples'], mode='loss')
    loss = losses['loss']
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.backbone.conv1.weight.grad is not None
    if cfg.model.type == 'MoCo':
        assert int(model.queue_ptr) == 4  # the 4 keys were enqueued


def test_imagenet100_pipeline_on_a_fake_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls in ('n01', 'n02'):
        os.makedirs(tmp_path / 'train' / cls)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            tmp_path / 'train' / cls / 'a.JPEG')
    cfg = _load(IMAGENET100)
    assert cfg.model.backbone.type == 'EfficientNetV2' and cfg.model.backbone.arch == 's'
    assert cfg.data_preprocessor.to_rgb
    ds_cfg = cfg.train_dataloader.dataset.copy()
    ds_cfg.update(data_root=str(tmp_path))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        dataset = DATASETS.build(ds_cfg)
    assert len(dataset) == 2 and dataset.CLASSES == ('n01', 'n02')
    views = dataset[1]['inputs']
    assert [tuple(v.shape) for v in views] == [(3, 224, 224)] * 2
    assert dataset[1]['data_samples'].gt_label.item() == 1
