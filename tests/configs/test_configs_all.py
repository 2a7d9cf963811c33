"""Every shipped attack / defense / BMAIU / eval config loads, finalizes and builds; the config
tree follows one naming convention, keeps the CIFAR-10 mean / std in one place and is indexed by
``model-index.yml``."""
import glob
import os
import os.path as osp
import re

import pytest
import torch
import yaml
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.apis import finalize_config
from bmaiu_plugin.triggers import build_trigger
from mmpretrain.registry import MODELS

from conftest import REPO_ROOT
KINDS = ('attacks', 'bmaiu', 'defenses', 'eval', 'searched_trigger')
CONFIGS = sorted(osp.relpath(p, REPO_ROOT) for d in KINDS
                 for p in glob.glob(osp.join(REPO_ROOT, 'configs', d, '*.py')))
CONFIGS.append('configs/bmaiu_simclr_cifar10.py')
#: Research configs of the CPU-scale study (they inherit from the configs above).
PROJECT_CONFIGS = sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(
    osp.join(REPO_ROOT, 'projects', '*', 'configs', '*.py')))
#: Every config of configs/ that is not a `_base_` part.
EVERY = sorted(osp.relpath(p, REPO_ROOT) for p in glob.glob(
    osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p.split(os.sep))

#: {algo}_{backbone}_{pretrain}_{NxbM-recipe}_{data}.py for the attacks: the SSL method the
#: encoder was pre-trained with comes right after the backbone.
ATTACK_RE = re.compile(
    r'^(?P<algo>[a-z0-9]+(-[a-z0-9]+)*)_(?P<backbone>(preact)?resnet18(-w16)?)'
    r'_(?P<pretrain>simclr|byol)'
    r'_\d+xb\d+(-[a-z0-9.]+)*_cifar10\.py$')
#: {algo}_{backbone}_{NxbM-recipe}_{data}.py for the searched-trigger defense (SSL-agnostic).
SEARCHED_RE = re.compile(r'^searched-trigger(-[a-z0-9]+)*_(preact)?resnet18(-w16)?'
                         r'_\d+xb\d+(-[a-z0-9.]+)*_cifar10\.py$')
#: {algo}_{backbone}[_{recipe}]_{data}.py for the SSL-agnostic defenses (no SSL token).
DEFENSE_RE = re.compile(
    r'^(?P<algo>clp|decree|finetune-control|ibau|sslcleanse)_(?P<backbone>(preact)?resnet18(-w16)?)'
    r'(_(u\d+|\d+xb\d+(-[a-z0-9.]+)*))?_cifar10\.py$')
#: What the config tree no longer carries (replaced in the package layout).
GONE_TYPES = ('ReferenceSetHook', 'SSLCleanseDetectHook', 'EvaluatorTriggersHook',
              'DecreeDetector')
CIFAR_MEAN = '125.307'


@pytest.fixture(scope='module')
def dummy_encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp('enc') / 'encoder.pth'
    torch.save({'w': torch.zeros(1)}, str(path))
    return str(path)


def _types(node):
    """Every ``type`` value in a config subtree."""
    if isinstance(node, dict):
        if isinstance(node.get('type'), str):
            yield node['type']
        for v in node.values():
            yield from _types(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from _types(v)


def test_there_are_configs_of_every_kind():
    kinds = {p.split('/')[1] for p in CONFIGS[:-1]}
    assert {'attacks', 'bmaiu', 'defenses', 'eval'} <= kinds
    for name in ('badencoder', 'badencoder-multitarget', 'estas', 'ctrl', 'sslbackdoor'):
        assert any(osp.basename(p).startswith(f'{name}_') for p in CONFIGS), name
    for name in ('clp', 'decree', 'ibau', 'sslcleanse'):
        assert any(osp.basename(p).startswith(f'{name}_') for p in CONFIGS), name
    assert len(CONFIGS) >= 25


@pytest.mark.parametrize('rel', CONFIGS + PROJECT_CONFIGS)
def test_config_loads(rel, monkeypatch):
    """``Config.fromfile`` alone: the `_base_` chain resolves and the plugin's conventions hold."""
    monkeypatch.chdir(REPO_ROOT)
    cfg = Config.fromfile(osp.join(REPO_ROOT, rel))
    assert cfg.default_scope == 'mmpretrain'
    assert 'bmaiu_plugin' in cfg.custom_imports['imports']
    assert isinstance(cfg.model, dict) and cfg.model.get('type')
    assert not set(_types(cfg.to_dict())) & set(GONE_TYPES), rel
    assert 'decree' not in cfg.model, 'DECREE settings belong to the probe loop (pl1)'


@pytest.mark.parametrize('rel', CONFIGS + PROJECT_CONFIGS)
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


def test_attack_and_defense_names_follow_one_field_order():
    for rel in CONFIGS:
        name = osp.basename(rel)
        if rel.startswith('configs/attacks/'):
            assert ATTACK_RE.match(name), name
        elif rel.startswith('configs/defenses/'):
            assert DEFENSE_RE.match(name), name
        elif rel.startswith('configs/searched_trigger/'):
            assert SEARCHED_RE.match(name), name
    for rel in PROJECT_CONFIGS:  # named as the kind of config they build on
        searched = 'configs/searched_trigger/' in open(osp.join(REPO_ROOT, rel)).read()
        assert (SEARCHED_RE if searched else ATTACK_RE).match(osp.basename(rel)), rel


def test_config_basenames_are_unique():
    names = [osp.basename(p) for p in EVERY + PROJECT_CONFIGS]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


def test_no_alias_configs():
    """A config that only `_base_`s another adds nothing (the README entry point excepted)."""
    for rel in EVERY + PROJECT_CONFIGS:
        if rel == 'configs/bmaiu_simclr_cifar10.py':
            continue
        code = [ln for ln in open(osp.join(REPO_ROOT, rel)).read().splitlines()
                if ln.strip() and not ln.lstrip().startswith('#')]
        assert not (len(code) == 1 and code[0].startswith('_base_')), rel


def test_w16_twins_match_their_full_width_config():
    """A `-w16` config changes the width (and budget), never the algorithm or its target."""
    for rel in CONFIGS:
        if '-w16' not in rel or not rel.startswith(('configs/attacks/', 'configs/defenses/',
                                                    'configs/eval/')):
            continue
        full = re.sub(r'-w16', '', rel)
        full = re.sub(r'_1xb(\d+)-10e_', r'_1xb\1-20e_', full)  # the w16 attacks' 10 epochs
        full = full.replace('-coslr-8e_', '-coslr-500e_').replace('1xb256-coslr', '1xb512-coslr')
        if not osp.isfile(osp.join(REPO_ROOT, full)):
            continue  # e.g. badencoder-multitarget4 has no full-width twin
        small, big = (Config.fromfile(osp.join(REPO_ROOT, p)) for p in (rel, full))
        assert small.model.type == big.model.type, rel
        assert small.get('evaluate_attack') == big.get('evaluate_attack'), rel
        if small.model.get('backbone'):
            assert small.model.backbone.base_channels == 16, rel


def test_cifar10_mean_std_are_defined_once():
    holders = [osp.relpath(p, REPO_ROOT) for p in glob.glob(
        osp.join(REPO_ROOT, 'configs', '**', '*.py'), recursive=True)
        if CIFAR_MEAN in open(p).read()]
    assert holders == ['configs/_base_/datasets/cifar10_mean_std.py'], holders
    base = Config.fromfile(osp.join(REPO_ROOT, 'configs/_base_/models/resnet18_cifar.py'))
    norm = Config.fromfile(osp.join(REPO_ROOT, 'configs/_base_/datasets/cifar10_mean_std.py'))
    assert base.model.mean == norm.cifar10_mean and base.model.std == norm.cifar10_std
    for rel in CONFIGS:
        cfg = Config.fromfile(osp.join(REPO_ROOT, rel))
        if 'mean' in cfg.model:
            assert cfg.model.mean == norm.cifar10_mean, rel


def test_decree_settings_are_the_probe_loops():
    """PL1 of every probed encoder: the DECREE settings sit in the probe loop (`pl1`)."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/defenses/decree_resnet18_cifar10.py'))
    assert cfg.model.type == 'ProbedEncoder'
    assert cfg.test_cfg.pl1.get('enable', True) is not False
    assert (cfg.test_cfg.pl1.shadow_ratio, cfg.test_cfg.pl1.batch_size) == (0.1, 128)
    w16 = Config.fromfile(osp.join(REPO_ROOT, 'configs/defenses/decree_resnet18-w16_cifar10.py'))
    assert (w16.test_cfg.pl1.shadow_ratio, w16.test_cfg.pl1.max_steps) == (0.05, 500)
    assert w16.test_cfg.pl1.lr == 0.5  # the rest of the full config's settings stays
    for rel, loops in [('configs/defenses/clp_resnet18_u3_cifar10.py', ('test_cfg', )),
                       ('configs/defenses/ibau_resnet18_1xb256-5e_cifar10.py',
                        ('val_cfg', 'test_cfg'))]:
        cfg = Config.fromfile(osp.join(REPO_ROOT, rel))
        for loop in loops:
            assert cfg[loop].pl1.enable is False, (rel, loop)  # carried, switched off


def test_model_index_lists_every_config():
    index = yaml.safe_load(open(osp.join(REPO_ROOT, 'model-index.yml')))
    imports = index['Import']
    for rel in imports:
        assert osp.isfile(osp.join(REPO_ROOT, rel)), rel
    folders = ('attacks', 'defenses', 'selfsup', 'backbones', 'bmaiu', 'searched_trigger')
    for folder in folders:
        assert f'configs/{folder}/metafile.yml' in imports, folder
    listed = {}
    for rel in imports:
        meta = yaml.safe_load(open(osp.join(REPO_ROOT, rel)))
        collections = {c['Name'] for c in meta.get('Collections', [])}
        for m in meta['Models']:
            assert osp.isfile(osp.join(REPO_ROOT, m['Config'])), m['Config']
            listed[m['Config']] = m
            if rel.split('/')[1] in folders:
                assert m['Name'] == osp.splitext(osp.basename(m['Config']))[0], m['Name']
                assert m['In Collection'] in collections, m['Name']
    for rel in EVERY:
        if rel.split('/')[1] in folders:
            assert rel in listed, f'{rel} is not in its folder metafile.yml'


def _expand_braces(token: str) -> list:
    """``a-{x,y}_b.py`` -> ``['a-x_b.py', 'a-y_b.py']`` (one level, as the docs write them)."""
    m = re.search(r'\{([^{}]*)\}', token)
    if m is None:
        return [token]
    return [w for alt in m.group(1).split(',')
            for w in _expand_braces(token[:m.start()] + alt + token[m.end():])]


def test_every_config_the_docs_name_exists():
    docs = [osp.join(REPO_ROOT, 'README.md')] + glob.glob(osp.join(REPO_ROOT, 'docs', '*.md')) + \
        glob.glob(osp.join(REPO_ROOT, 'configs', '*', 'README.md')) + \
        glob.glob(osp.join(REPO_ROOT, 'projects', '*', 'README.md'))
    shipped = {osp.basename(p) for p in EVERY + PROJECT_CONFIGS}
    token = re.compile(r'[A-Za-z0-9_.{},\-]+_(?:cifar10|imagenet100)\.py')
    missing, named = [], 0
    for path in docs:
        text = open(path, encoding='utf-8').read()
        for t in token.findall(text):
            for name in _expand_braces(t):
                named += 1
                if name.startswith(('_', '-')):
                    continue  # a name fragment in prose ("the `_1xb512-..._cifar10.py` part")
                if name not in shipped:
                    missing.append(f'{osp.relpath(path, REPO_ROOT)}: {name}')
    assert named > 50
    assert not missing, missing
