"""CLP / I-BAU / DECREE as registered defenses: configs, tools runs, hooks, bad input."""
import copy
import importlib.util
import json
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.apis import finalize_config
from bmaiu_plugin.defenses import clp_prune, ibau_hypergradient
from bmaiu_plugin.engine.defense_hooks import EvaluatorTriggersHook, SaveDefendedEncoderHook
from bmaiu_plugin.models import CLPDefense, DecreeDetector, IBAUDefense
from bmaiu_plugin.models.baselines import check_decree_cfg, shadow_images
from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG_DIR = osp.join(REPO, 'configs', 'defenses')
CONFIGS = {
    'clp_resnet18_simclr_u3_cifar10.py': 'CLPDefense',
    'clp_resnet18-w16_simclr_u3_cifar10.py': 'CLPDefense',
    'ibau_resnet18_simclr_1xb256-5e_cifar10.py': 'IBAUDefense',
    'ibau_resnet18-w16_simclr_1xb256-5e_cifar10.py': 'IBAUDefense',
    'decree_resnet18_simclr_cifar10.py': 'DecreeDetector',
    'decree_resnet18-w16_simclr_cifar10.py': 'DecreeDetector',
    'clp_resnet18_byol_u3_cifar10.py': 'CLPDefense',
    'ibau_resnet18_byol_1xb256-5e_cifar10.py': 'IBAUDefense',
    'decree_resnet18_byol_cifar10.py': 'DecreeDetector',
}
TINY = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
            norm_cfg=dict(type='BN'))
TINY_OPTS = ['model.backbone.stem_channels=8', 'model.backbone.base_channels=8']
TEST_OPTS = TINY_OPTS + ['test_dataloader.num_workers=0', 'test_cfg.probe_dataloader.num_workers=0',
                         'test_evaluator.epochs=2', 'test_cfg.probe_dataloader.dataset.indices=40']
TRAIN_OPTS = TINY_OPTS + [
    'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
    'train_dataloader.batch_size=8', 'train_dataloader.dataset.ratio=0.5',
    'val_dataloader.num_workers=0', 'val_cfg.probe_dataloader.num_workers=0',
    'val_evaluator.epochs=2', 'val_cfg.probe_dataloader.dataset.indices=40',
    'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'model.K=2', 'model.portion=0.5',
    'model.head.epochs=2']


def _tool(name):
    """``main`` of ``tools/<name>.py``, run in this process (no second interpreter start-up)."""
    spec = importlib.util.spec_from_file_location(f'_bl_tool_{name}',
                                                  osp.join(REPO, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def _error_lines(capsys):
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith('error:')]


@pytest.fixture
def encoder_file(tmp_path):
    """A width-8 encoder with trained-looking BN statistics and one planted outlier channel."""
    torch.manual_seed(0)
    enc = MODELS.build(TINY)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in enc.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        enc.layer1[0].conv1.weight[3] *= 50
    path = str(tmp_path / 'suspect.pth')
    torch.save(enc.state_dict(), path)
    return path


@pytest.fixture
def data_root(fake_cifar, monkeypatch):
    root, _ = fake_cifar
    monkeypatch.setenv('BMAIU_DATA_ROOT', root)
    return root


# configs -------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_config_builds_and_keeps_the_attack_with_the_evaluator(name):
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    assert cfg.model.type == CONFIGS[name] and cfg.encoder_checkpoint is None
    text = json.dumps(cfg.model.to_dict())
    assert 'white' not in text and 'evaluate_attack' not in cfg.model  # no attacker trigger
    with pytest.raises(ConfigValueError, match='encoder_checkpoint=PATH'):
        finalize_config(cfg.copy())
    cfg.encoder_checkpoint = __file__  # any existing file passes the path check
    cfg = finalize_config(cfg)
    assert cfg.model.encoder_checkpoint == __file__
    (trig,) = cfg.test_cfg.triggers
    assert trig['name'] == 'badencoder' and trig['target'] == 9
    if '-w16' in name:  # build the CPU-scale model (cheap) with the checkpoint switched off
        cfg.model.encoder_checkpoint = None
        model = MODELS.build(cfg.model)
        assert model.backbone.stem_channels == 16


def test_missing_encoder_checkpoint_file(tmp_path):
    cfg = Config.fromfile(osp.join(CFG_DIR, 'clp_resnet18_simclr_u3_cifar10.py'))
    cfg.encoder_checkpoint = str(tmp_path / 'nope.pth')
    with pytest.raises(CheckpointError, match='not found'):
        finalize_config(cfg)


# CLP -----------------------------------------------------------------------------------------
def test_clp_defense_prunes_exactly_what_clp_prune_selects(encoder_file):
    model = CLPDefense(TINY, encoder_checkpoint=encoder_file, u=2., u_sweep=[1.5, 2.])
    model.init_weights()
    suspect = MODELS.build(TINY)
    suspect.load_state_dict(torch.load(encoder_file, weights_only=True))
    for u, enc in [(2., model.backbone), (1.5, model.sweep['1_5'])]:
        expected = copy.deepcopy(suspect)
        idx = clp_prune(expected, u)
        assert model.pruned[f'{u:g}'] == idx
        for k, v in expected.state_dict().items():
            assert torch.equal(enc.state_dict()[k], v), (u, k)
    assert 3 in model.pruned['2']['layer1.0.bn1']  # the planted outlier channel
    for k, v in suspect.state_dict().items():  # the suspect copy is untouched
        assert torch.equal(model.suspect.state_dict()[k], v), k
    assert set(model.probe_encoders()) == {'suspect', 'defended', 'defended_u1.5'}
    diag = model.probe_diagnostics(None, None)['clp']
    n = sum(len(v) for v in model.pruned['2'].values())
    assert diag['u'] == 2. and diag['pruned_channels'] == n > 0
    assert diag['per_layer']['layer1.0.bn1'] == len(model.pruned['2']['layer1.0.bn1'])
    assert set(diag['sweep']) == {'2', '1.5'}
    model.init_weights()  # idempotent: prunes again from the suspect
    assert model.pruned['2'] == clp_prune(copy.deepcopy(suspect), 2.)


def test_clp_tools_test_writes_metrics_and_defended_encoder(encoder_file, data_root, tmp_path):
    cfg = osp.join(CFG_DIR, 'clp_resnet18_simclr_u3_cifar10.py')
    wd = tmp_path / 'clp'
    rc = _tool('test')([cfg, encoder_file, '--work-dir', str(wd), '--cfg-options',
                        'model.u=2', 'model.u_sweep=[1.5]', 'model.decree.enable=True',
                        'model.decree.max_steps=2', 'model.decree.batch_size=8',
                        'model.decree.shadow_ratio=0.2'] + TEST_OPTS)
    assert rc == 0
    m = json.load(open(wd / 'metrics.json'))
    assert set(m) >= {'suspect', 'defended', 'defended_u1.5', 'clp', 'PL1', 'decree'}
    assert set(m['PL1']) == {'suspect', 'defended'} and m['decree']['defended']['steps'] == 2
    assert m['defended']['triggers'] == 'badencoder' and set(m['defended']) >= {'BA', 'ASR', 'PA'}
    assert m['clp']['pruned_channels'] > 0
    # the saved file is the pruned backbone, tensors only
    state = torch.load(wd / 'defended_encoder.pth', weights_only=True)
    enc = MODELS.build(TINY)
    enc.load_state_dict(state, strict=True)
    expected = MODELS.build(TINY)
    expected.load_state_dict(torch.load(encoder_file, weights_only=True))
    clp_prune(expected, 2.)
    assert all(torch.equal(state[k], v) for k, v in expected.state_dict().items())
    # an input named like the output, in the work dir, is never overwritten
    before = (wd / 'defended_encoder.pth').read_bytes()
    mtime = (wd / 'defended_encoder.pth').stat().st_mtime_ns
    rc = _tool('test')([cfg, str(wd / 'defended_encoder.pth'), '--work-dir', str(wd),
                        '--cfg-options'] + TEST_OPTS)
    assert rc == 0 and (wd / 'defended_encoder.pth').read_bytes() == before
    assert (wd / 'defended_encoder.pth').stat().st_mtime_ns == mtime


# DECREE --------------------------------------------------------------------------------------
def test_decree_detector_writes_pl1_with_tools_test(encoder_file, data_root, tmp_path):
    cfg = osp.join(CFG_DIR, 'decree_resnet18_simclr_cifar10.py')
    wd = tmp_path / 'decree'
    rc = _tool('test')([cfg, encoder_file, '--work-dir', str(wd), '--cfg-options',
                        'model.decree.max_steps=4', 'model.decree.batch_size=8',
                        'model.decree.shadow_ratio=0.2'] + TEST_OPTS)
    assert rc == 0
    m = json.load(open(wd / 'metrics.json'))
    assert {'BA', 'ASR', 'PA'} <= set(m) and 0. < m['PL1'] <= 1.
    d = m['decree']
    assert d['steps'] == 4 and d['shadow_images'] == 20  # 20 % of the 10 fake test images a class
    assert d['mask_l1'] == pytest.approx(d['l1'] / 3, abs=0.01)
    assert m['PL1'] == pytest.approx(d['l1'] / 3072, abs=1e-4)
    assert -1. <= d['mean_cos'] <= 1.


def test_shadow_set_is_stratified_and_seeded():
    labels = torch.arange(100) % 10
    imgs = torch.arange(100).view(100, 1, 1, 1).expand(100, 3, 2, 2)
    a = shadow_images(imgs, labels, 0.2, seed=0)
    assert len(a) == 20 and torch.bincount(labels[a[:, 0, 0, 0]]).tolist() == [2] * 10
    assert torch.equal(a, shadow_images(imgs, labels, 0.2, seed=0))
    assert not torch.equal(a, shadow_images(imgs, labels, 0.2, seed=1))


# I-BAU ---------------------------------------------------------------------------------------
def _batches(n_batches=2, b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        x = torch.randint(0, 256, (b, 3, 32, 32), generator=g, dtype=torch.uint8)
        y = torch.randint(0, 10, (b,), generator=g)
        out.append(dict(inputs=x, data_samples=[DataSample().set_gt_label(int(v)) for v in y]))
    return out


def test_ibau_train_step_is_the_hypergradient_step(encoder_file):
    model = IBAUDefense(TINY, encoder_checkpoint=encoder_file, K=3, portion=0.5,
                        head=dict(epochs=2, batch_size=8, lr=0.1))
    model.init_weights()
    model.train()
    batches = _batches()
    model.fit_head(batches)
    assert bool(model.head_ready) and not model.backbone.training
    head0 = copy.deepcopy(model.head.state_dict())
    model.start_round(batches)
    assert model.delta.shape == (1, 3, 32, 32) and float(model.delta.norm()) > 0
    ref = copy.deepcopy(model)
    params = [p for p in list(model.backbone.parameters()) + list(model.head.parameters())
              if p.requires_grad]
    out = model.train_step(batches[0], OptimWrapper(torch.optim.SGD(params, lr=1.)))
    assert set(out) == {'loss', 'delta_norm'} and int(model.step) == 1
    # the same step by hand: hypergradient on the same batch (inner = first batch), same mask
    x = ref.normalizer(batches[0]['inputs'])
    y = torch.tensor([int(s.gt_label) for s in batches[0]['data_samples']])
    g = torch.Generator().manual_seed(0)
    pmask = torch.zeros(8)
    pmask[torch.randperm(8, generator=g)[:4]] = 1.
    ref_params = [p for p in list(ref.backbone.parameters()) + list(ref.head.parameters())
                  if p.requires_grad]
    hyper, _ = ibau_hypergradient(ref.classifier(), ref_params, ref.delta, (x, y), (x, y), K=3,
                                  perturb_mask=pmask)
    for p, q, h in zip(params, ref_params, hyper):
        torch.testing.assert_close(p.detach(), q.detach() - h, rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(model.head.state_dict()[k], v) for k, v in head0.items())
    moved = [n for n, p in model.backbone.named_parameters()
             if not torch.equal(p, model.suspect.state_dict()[n])]
    assert moved  # the encoder changed; the suspect copy did not
    assert all(not p.requires_grad for p in model.suspect.parameters())


def test_ibau_tools_train_reports_head_and_fresh_probe(encoder_file, data_root, tmp_path):
    cfg = osp.join(CFG_DIR, 'ibau_resnet18_simclr_1xb256-5e_cifar10.py')
    wd = tmp_path / 'ibau'
    rc = _tool('train')([cfg, '--work-dir', str(wd), '--cfg-options',
                         f'encoder_checkpoint={encoder_file}'] + TRAIN_OPTS)
    assert rc == 0
    m = json.load(open(wd / 'metrics.json'))
    for enc in ('suspect', 'defended', 'ibau_head', 'ibau_head_suspect'):
        assert {'BA', 'ASR', 'PA', 'ASR_all'} <= set(m[enc]), enc
        assert m[enc]['triggers'] == 'badencoder' and m[enc]['target'] == 9
    assert m['ibau']['rounds'] == 1 and len(m['ibau']['outer_loss']) == 1
    state = torch.load(wd / 'defended_encoder.pth', weights_only=True)
    suspect = torch.load(encoder_file, weights_only=True)
    assert set(state) == set(suspect)
    assert any(not torch.equal(state[k], suspect[k]) for k in suspect)


class _Runner:
    def __init__(self, model, triggers):
        self.model = model
        self.val_loop = type('Loop', (), dict(triggers=triggers))()
        self.test_loop = self.val_loop


def test_evaluator_triggers_are_lent_only_during_evaluation():
    model = IBAUDefense(TINY)
    trig = [dict(name='badencoder', trigger=None, target=9)]
    hook, runner = EvaluatorTriggersHook(), _Runner(model, trig)
    assert model._eval_triggers is None
    hook.before_val(runner)
    assert model._eval_triggers == trig
    hook.after_val(runner)
    assert model._eval_triggers is None
    hook.before_test(runner)
    hook.after_test(runner)
    assert model._eval_triggers is None


# bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize('cls,kw,match', [
    (CLPDefense, dict(u=0), 'CLP u must be'),
    (CLPDefense, dict(u=-1.), 'CLP u must be'),
    (CLPDefense, dict(u='three'), 'CLP u must be a number'),
    (CLPDefense, dict(u_sweep=[2, 0]), 'u_sweep value must be'),
    (CLPDefense, dict(u_sweep=4), 'u_sweep must be a list'),
    (IBAUDefense, dict(portion=1.5), 'portion must be in'),
    (IBAUDefense, dict(K=-1), 'K must be'),
    (IBAUDefense, dict(head=dict(epoch=3)), 'head setting'),
    (DecreeDetector, dict(decree=dict(shadow_ratio=0)), r'shadow_ratio must be in \(0, 1\]'),
    (DecreeDetector, dict(decree=dict(steps=3)), 'unknown decree setting'),
    (DecreeDetector, dict(decree=dict(batch_size=1)), 'batch_size must be'),
    (CLPDefense, dict(decree=dict(lr=0)), 'decree lr must be'),
    (DecreeDetector, dict(decree=dict(enable=False)), 'cannot be False'),
])
def test_bad_values_raise_config_value_error(cls, kw, match):
    with pytest.raises(ConfigValueError, match=match):
        cls(TINY, **kw)


def test_decree_option_can_be_carried_switched_off():
    assert check_decree_cfg(None) is None
    assert check_decree_cfg(dict(enable=False, shadow_ratio=0.1)) is None
    assert check_decree_cfg(dict(max_steps=5)) == dict(max_steps=5, shadow_ratio=0.1)
    assert CLPDefense(TINY, decree=dict(enable=False)).decree_cfg is None


def test_save_hook_filename_must_stay_in_work_dir():
    with pytest.raises(ConfigValueError, match='plain file name'):
        SaveDefendedEncoderHook(filename='../elsewhere.pth')


@pytest.mark.parametrize('tool,config,args,match', [
    ('test', 'clp_resnet18_simclr_u3_cifar10.py', [], 'encoder_checkpoint=PATH'),
    ('test', 'decree_resnet18_simclr_cifar10.py', ['BAD'], 'not a readable encoder checkpoint'),
    ('test', 'clp_resnet18_simclr_u3_cifar10.py', ['GOOD', '--cfg-options', 'model.u=0'],
     'CLP u must be'),
    ('train', 'ibau_resnet18_simclr_1xb256-5e_cifar10.py',
     ['--cfg-options', 'encoder_checkpoint=GOOD', 'train_dataloader.dataset.ratio=0'] + TINY_OPTS,
     r'data ratio must be in \(0, 1\]'),
    ('train', 'ibau_resnet18_simclr_1xb256-5e_cifar10.py',
     ['--cfg-options', 'encoder_checkpoint=GOOD', 'model.backbone.base_channels=16'],
     'does not match the config'),
])
def test_tools_bad_input_is_one_error_line(tool, config, args, match, encoder_file, data_root,
                                           tmp_path, capsys):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    subst = dict(BAD=str(bad), GOOD=encoder_file)
    args = [subst.get(a, a.replace('GOOD', encoder_file)) for a in args]
    rc = _tool(tool)([osp.join(CFG_DIR, config)] + args + ['--work-dir', str(tmp_path / 'wd')])
    assert rc == 2
    err = _error_lines(capsys)
    assert len(err) == 1 and re.search(match, err[0]), err
