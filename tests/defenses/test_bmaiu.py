"""BMAIU: loss terms, sign convention, stage switch, resume, bad input, defense/evaluator split.

The ablation options of the CPU study (``BMAIUAblation``) are tested in
``projects/cpu_study/tests/test_bmaiu_ablation.py``.
"""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.apis import finalize_config
from bmaiu_plugin.defenses import BMAIU
from bmaiu_plugin.models.finetune_base import sample_rows
from bmaiu_plugin.models.finetune_base import cosine
from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError
from conftest import REPO_ROOT

REPO = REPO_ROOT
BMAIU_CFG = osp.join(REPO, 'configs', 'bmaiu_simclr_cifar10.py')
SEARCH_CFG = osp.join(REPO, 'configs', 'searched_trigger',
                      'searched-trigger_resnet18_1xb64-10e_cifar10.py')
TINY_BACKBONE = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
                     norm_cfg=dict(type='BN'))


def tiny_bmaiu(**kw) -> BMAIU:
    torch.manual_seed(0)
    kw.setdefault('reference', dict(mode='random_class', num=4))
    model = BMAIU(backbone=TINY_BACKBONE, **kw)
    model.sync_frozen(['suspect', 'teacher'])
    model.reference = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    return model


def imgs(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_stage1_starts_consistent_and_stage2_terms_match_definitions():
    model = tiny_bmaiu()
    model.train()
    x = imgs()
    losses = model.loss(x)
    # f1 == f0 at the start: the consistency and anchor terms are exactly zero
    assert losses['loss_consistency'].item() == pytest.approx(0., abs=1e-6)
    assert losses['loss_anchor'].item() == pytest.approx(0., abs=1e-6)
    assert 0. < losses['loss_effective'].item() <= 2.
    # the logged trigger shift is a cosine, detached, and not summed into the loss
    assert -1. <= losses['trigger_shift'].item() <= 1. and not losses['trigger_shift'].requires_grad
    _, log_vars = model.parse_losses(losses)
    assert float(log_vars['loss']) == pytest.approx(sum(
        v.item() for k, v in losses.items() if k.startswith('loss')), rel=1e-5)
    model.start_unlearning()
    assert int(model.stage) == 2
    gen_step = int(model.step)
    losses = model.loss(x)
    # recompute each term by hand with the same generator stream
    gen = model.step_generator(x.device)
    assert int(model.step) == gen_step
    ref = sample_rows(model.reference, len(x), gen)
    xe = model.custom_trigger(x, generator=gen)
    with torch.no_grad():
        f1x = model.features(model.teacher, x)
        f2xe = model.features(model.backbone, xe)
        anchor = model.features(model.teacher, ref)
    assert losses['loss_invariance'].item() == pytest.approx(
        10. * (1 - cosine(f2xe, f1x)).mean().item(), rel=1e-4)
    assert losses['loss_repulsion'].item() == pytest.approx(
        cosine(f2xe, anchor).mean().item(), rel=1e-4, abs=1e-6)
    assert losses['loss_consistency'].item() == pytest.approx(0., abs=1e-6)


@pytest.mark.parametrize('term,quantity,direction,lr', [
    ('loss_repulsion', 'cos_trig_anchor', -1, 0.05),   # moves triggered features away from R
    ('loss_invariance', 'cos_trig_clean', +1, 0.002),  # pulls them to the clean teacher
])
def test_stage2_terms_move_features_the_intended_way(term, quantity, direction, lr):
    model = tiny_bmaiu(u3=1.)
    model.train()
    x = imgs(16)
    params = [p for p in model.backbone.parameters() if p.requires_grad]
    model.start_unlearning()
    # move f2 away from its teacher f1, so that both terms have something to do
    with torch.no_grad():
        g = torch.Generator().manual_seed(5)
        for p in params:
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=g))
    opt = torch.optim.SGD(params, lr=lr)

    def measure():
        g = torch.Generator().manual_seed(123)
        xe = model.custom_trigger(x, generator=g)
        with torch.no_grad():
            f2xe = model.features(model.backbone, xe)
            return dict(cos_trig_anchor=cosine(f2xe, model.features(
                model.teacher, model.reference).mean(0, keepdim=True)).mean().item(),
                cos_trig_clean=cosine(f2xe, model.features(model.teacher, x)).mean().item())

    before = measure()[quantity]
    for _ in range(5):
        loss = model.loss(x)[term]
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.step += 1
    after = measure()[quantity]
    assert direction * (after - before) > 1e-4, (before, after)


def test_u0_weights_only_the_stage2_clean_consistency():
    losses = {}
    for u0 in (0., 1., 2.5):
        model = tiny_bmaiu(u0=u0)
        model.train()
        model.start_unlearning()
        with torch.no_grad():  # move f2 off its teacher so the term is non-zero
            for p in model.backbone.parameters():
                p.mul_(1.1)
        losses[u0] = model.loss(imgs())
    base = losses[1.]['loss_consistency'].item()
    assert base > 1e-4
    assert losses[0.]['loss_consistency'].item() == 0.
    assert losses[2.5]['loss_consistency'].item() == pytest.approx(2.5 * base, rel=1e-5)
    for u0 in (0., 2.5):  # the other terms do not depend on u0
        for k in ('loss_invariance', 'loss_repulsion'):
            assert losses[u0][k].item() == pytest.approx(losses[1.][k].item(), rel=1e-5)


def test_patch_family_as_custom_trigger_runs_both_stages():
    model = tiny_bmaiu(custom_trigger=dict(type='RandomPatchFamily', sizes=(3, 6)))
    model.train()
    x = imgs()
    for stage in (1, 2):
        if stage == 2:
            model.start_unlearning()
        losses = model.loss(x)
        assert all(torch.isfinite(v).all() for v in losses.values())
        model.step += 1
    with pytest.raises(ConfigValueError, match='does not fit'):
        BMAIU(backbone=TINY_BACKBONE, custom_trigger=dict(type='RandomPatchFamily',
                                                          sizes=(3, 33)))


def test_bn_frozen_and_teachers_frozen():
    model = tiny_bmaiu()
    model.train()
    bn = model.backbone.norm1
    assert not bn.training and not bn.weight.requires_grad
    assert all(not p.requires_grad for p in model.suspect.parameters())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    assert not model.teacher.training


@pytest.mark.parametrize('kw,match', [
    (dict(u2=-1.), 'u2'),
    (dict(u0=-0.5), 'u0'),
    (dict(custom_trigger=dict(type='PatchTrigger', size=40)), '40x40 trigger does not fit'),
])
def test_bad_config_values(kw, match):
    with pytest.raises(ConfigValueError, match=match):
        BMAIU(backbone=TINY_BACKBONE, **kw)


def test_defense_config_keeps_attacker_trigger_with_evaluator_only():
    cfg = Config.fromfile(BMAIU_CFG)
    text = json.dumps(cfg.model.to_dict())
    # the model (the defense) has its own random trigger and no attacker trigger or target
    assert "'white'" not in text and '"white"' not in text
    assert 'evaluate_attack' not in cfg.model and 'triggers' not in cfg.model
    cfg.encoder_checkpoint = __file__  # any existing file passes the path check here
    cfg = finalize_config(cfg)
    (trig,) = cfg.val_cfg.triggers
    assert trig['name'] == 'badencoder' and trig['target'] == 9
    assert trig['trigger']['pattern'] == 'white'


def test_missing_encoder_checkpoint_is_one_clear_error(tmp_path):
    cfg = Config.fromfile(BMAIU_CFG)
    with pytest.raises(ConfigValueError, match='encoder_checkpoint=PATH'):
        finalize_config(cfg.copy())
    cfg.encoder_checkpoint = str(tmp_path / 'nope.pth')
    with pytest.raises(CheckpointError, match='not found'):
        finalize_config(cfg)


def _tiny_run_cfg(fake_root, ckpt, work_dir, max_epochs, config=BMAIU_CFG):
    cfg = Config.fromfile(config)
    cfg.encoder_checkpoint = ckpt
    cfg.work_dir = str(work_dir)
    cfg.model.backbone = dict(TINY_BACKBONE)
    cfg.model.reference = dict(mode='random_class', num=2)
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.dataset.ratio = 1.0
    cfg.train_dataloader.dataset.dataset.data_root = fake_root
    for loader in (cfg.val_dataloader, cfg.val_cfg.probe_dataloader):
        loader.dataset.data_root = fake_root
        loader.num_workers = 0
        loader.batch_size = 50
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_cfg.probe_dataloader = cfg.val_cfg.probe_dataloader
    cfg.val_evaluator.epochs = 2
    if config == BMAIU_CFG:
        cfg.custom_hooks[1].implant_epochs = 1
    cfg.train_cfg.max_epochs = max_epochs
    cfg.train_cfg.val_interval = 3
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    cfg.default_hooks.logger.interval = 1
    cfg.env_cfg.dist_cfg = dict(backend='gloo')
    cfg.randomness = dict(seed=0, deterministic=False)
    return finalize_config(cfg)


def _train(cfg):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def _search_run_cfg(fake_root, ckpt, work_dir, max_epochs):
    """The searched-trigger defense at a tiny budget: re-searched before every epoch."""
    cfg = _tiny_run_cfg(fake_root, ckpt, work_dir, max_epochs, config=SEARCH_CFG)
    cfg.model.trigger.size = 6
    cfg.model.search = dict(steps=3, lr=0.3, batch_size=4)
    cfg.model.restart_steps = 2
    return cfg


@pytest.mark.parametrize('recipe', ['paper', 'search'])
def test_resume_in_stage2_matches_uninterrupted_run(fake_cifar, tmp_path, recipe):
    fake_root, _ = fake_cifar
    torch.manual_seed(0)
    from mmpretrain.registry import MODELS
    ckpt = str(tmp_path / 'suspect.pth')
    torch.save(MODELS.build(TINY_BACKBONE).state_dict(), ckpt)
    make = _search_run_cfg if recipe == 'search' else _tiny_run_cfg

    full = _train(make(fake_root, ckpt, tmp_path / 'full', 3))
    # "killed" after epoch 2 (the first unlearning epoch), then resumed to the end
    part = _train(make(fake_root, ckpt, tmp_path / 'part', 2))
    if recipe == 'search':  # searched before training and again before epochs 1 and 2
        assert not torch.equal(part.model.trigger.pattern, _train_free_pattern(part.model))
    else:
        assert int(part.model.stage) == 2
    cfg = make(fake_root, ckpt, tmp_path / 'part', 3)
    cfg.resume = True
    resumed = _train(cfg)

    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    m_full = json.load(open(tmp_path / 'full' / 'metrics.json'))
    m_res = json.load(open(tmp_path / 'part' / 'metrics.json'))
    assert m_full == m_res
    assert m_full['defended']['triggers'] == ['badencoder', 'custom']
    assert 'reference' in m_full  # the defense report: how R was chosen
    if recipe == 'search':
        assert set(m_full) >= {'suspect', 'defended'} and 'implanted' not in m_full
        info = m_full['trigger_search']
        assert info['objective'] == 'collapse' and info['end'] >= info['start'] > 0.5
    else:
        assert set(m_full) >= {'suspect', 'implanted', 'defended', 'BTS', 'CCS', 'BTS_gap'}


def _train_free_pattern(model):
    """The custom trigger's seeded random pattern, as built before any search."""
    from bmaiu_plugin.triggers import build_trigger
    return build_trigger(dict(type='PatchTrigger', size=6, pattern='random', position='random',
                              seed=2025, img_size=32)).pattern.to(model.trigger.pattern)
