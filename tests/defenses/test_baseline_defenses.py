"""CLP / I-BAU as registered defenses and DECREE's PL1 in the probe loop: configs, tools runs,
hooks, bad input."""
import copy
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
from bmaiu_plugin.engine.hooks import SaveDefendedEncoderHook
from bmaiu_plugin.defenses import CLPDefense, IBAUDefense
from bmaiu_plugin.evaluation.diagnostics import check_pl1_cfg, shadow_images
from bmaiu_plugin.utils.validate import check_config
from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError
from conftest import REPO_ROOT, error_lines, tool_main

REPO = REPO_ROOT
CFG_DIR = osp.join(REPO, 'configs', 'defenses')
CONFIGS = {
    'clp_resnet18_u3_cifar10.py': 'CLPDefense',
    'clp_resnet18-w16_u3_cifar10.py': 'CLPDefense',
    'ibau_resnet18_1xb256-5e_cifar10.py': 'IBAUDefense',
    'ibau_resnet18-w16_1xb256-5e_cifar10.py': 'IBAUDefense',
    'decree_resnet18_cifar10.py': 'ProbedEncoder',
    'decree_resnet18-w16_cifar10.py': 'ProbedEncoder',
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
    cfg = Config.fromfile(osp.join(CFG_DIR, 'clp_resnet18_u3_cifar10.py'))
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
    diag = model.defense_report()['clp']
    n = sum(len(v) for v in model.pruned['2'].values())
    assert diag['u'] == 2. and diag['pruned_channels'] == n > 0
    assert diag['per_layer']['layer1.0.bn1'] == len(model.pruned['2']['layer1.0.bn1'])
    assert set(diag['sweep']) == {'2', '1.5'}
    model.init_weights()  # idempotent: prunes again from the suspect
    assert model.pruned['2'] == clp_prune(copy.deepcopy(suspect), 2.)


def test_clp_tools_test_writes_metrics_and_defended_encoder(encoder_file, data_root, tmp_path):
    cfg = osp.join(CFG_DIR, 'clp_resnet18_u3_cifar10.py')
    wd = tmp_path / 'clp'
    rc = tool_main('test')([cfg, encoder_file, '--work-dir', str(wd), '--cfg-options',
                        'model.u=2', 'model.u_sweep=[1.5]', 'test_cfg.pl1.enable=True',
                        'test_cfg.pl1.max_steps=2', 'test_cfg.pl1.batch_size=8',
                        'test_cfg.pl1.shadow_ratio=0.2',
                        'test_cfg.pl1.encoders=[suspect,defended]'] + TEST_OPTS)
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
    rc = tool_main('test')([cfg, str(wd / 'defended_encoder.pth'), '--work-dir', str(wd),
                        '--cfg-options'] + TEST_OPTS)
    assert rc == 0 and (wd / 'defended_encoder.pth').read_bytes() == before
    assert (wd / 'defended_encoder.pth').stat().st_mtime_ns == mtime


# DECREE --------------------------------------------------------------------------------------
def test_decree_config_writes_pl1_with_tools_test(encoder_file, data_root, tmp_path):
    cfg = osp.join(CFG_DIR, 'decree_resnet18_cifar10.py')
    wd = tmp_path / 'decree'
    rc = tool_main('test')([cfg, encoder_file, '--work-dir', str(wd), '--cfg-options',
                        'test_cfg.pl1.max_steps=4', 'test_cfg.pl1.batch_size=8',
                        'test_cfg.pl1.shadow_ratio=0.2'] + TEST_OPTS)
    assert rc == 0
    m = json.load(open(wd / 'metrics.json'))
    assert {'BA', 'ASR', 'PA'} <= set(m) and 0. < m['PL1'] <= 1.
    d = m['decree']
    assert d['steps'] == 4 and d['shadow_images'] == 20  # 20 % of the 10 fake test images a class
    assert d['mask_l1'] == pytest.approx(d['l1'] / 3, abs=0.01)
    assert m['PL1'] == pytest.approx(d['l1'] / 3072, abs=1e-4)
    assert -1. <= d['mean_cos'] <= 1.


AUDIT_OPTS = ['test_cfg.audit.search_steps=3', 'test_cfg.audit.batch_size=8',
              'test_cfg.audit.patch_sizes=[4]', 'test_cfg.audit.mask_areas=[16]',
              'test_cfg.audit.window_sizes=[16]',
              'test_cfg.audit.shadow_ratio=0.5']


def test_audit_in_the_probe_loop_reports_each_encoder(encoder_file, data_root, tmp_path):
    """``test_cfg.audit`` audits the probed encoders (CLP: suspect and defended) in the same
    run: each entry gets ``audit_ASR`` / ``audit_collapse``, the details go to ``audit``."""
    cfg = osp.join(CFG_DIR, 'clp_resnet18_u3_cifar10.py')
    wd = tmp_path / 'clp_audit'
    rc = tool_main('test')([cfg, encoder_file, '--work-dir', str(wd), '--cfg-options']
                           + AUDIT_OPTS + TEST_OPTS)
    assert rc == 0
    m = json.load(open(wd / 'metrics.json'))
    assert set(m['audit']) == {'suspect', 'defended'}
    for enc in ('suspect', 'defended'):
        a = m['audit'][enc]
        assert set(a['triggers']) == {'patch4', 'window16', 'mask16'}
        assert m[enc]['audit_ASR'] == a['asr'] == max(t['asr'] for t in a['triggers'].values())
        assert m[enc]['audit_collapse'] == a['collapse']
        assert 0. <= a['asr'] <= 100. and -1. <= a['collapse'] <= 1.
    # one encoder only
    wd = tmp_path / 'clp_audit_defended'
    rc = tool_main('test')([cfg, encoder_file, '--work-dir', str(wd), '--cfg-options',
                            'test_cfg.audit.encoders=[defended]'] + AUDIT_OPTS + TEST_OPTS)
    m = json.load(open(wd / 'metrics.json'))
    assert rc == 0 and list(m['audit']) == ['defended'] and 'audit_ASR' not in m['suspect']


@pytest.mark.parametrize('audit,match', [
    (dict(search_steps=0), 'search_steps must be'),
    (dict(stepz=3), 'unknown test_cfg.audit setting'),
    (dict(encoders='defended'), 'encoders must be a non-empty list'),
])
def test_bad_audit_settings_fail_before_the_run(audit, match):
    cfg = Config.fromfile(osp.join(CFG_DIR, 'clp_resnet18_u3_cifar10.py'))
    cfg.test_cfg.audit = audit
    with pytest.raises(ConfigValueError, match=match):
        check_config(cfg)


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
    cfg = osp.join(CFG_DIR, 'ibau_resnet18_1xb256-5e_cifar10.py')
    wd = tmp_path / 'ibau'
    rc = tool_main('train')([cfg, '--work-dir', str(wd), '--cfg-options',
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


def _old_head_metrics(model, images, labels, encoder, head, triggers, batch_size=256):
    """The classifier's own numbers as ``IBAUDefense.head_metrics`` computed them."""
    from bmaiu_plugin.evaluation.probe import backdoor_metrics
    clf = model.classifier(encoder, head)
    gen = torch.Generator().manual_seed(0)
    logits = lambda x: torch.cat([clf(model.normalizer(x[i:i + batch_size]))  # noqa: E731
                                  for i in range(0, len(x), batch_size)])
    with torch.no_grad():
        clean = logits(images)
        out = dict(BA=100. * (clean.argmax(1) == labels).float().mean().item())
        for t in triggers:
            if t['target'] < 0:
                continue
            stamped = torch.cat([t['trigger'](images[i:i + batch_size], generator=gen)
                                 for i in range(0, len(images), batch_size)])
            m = backdoor_metrics(torch.nn.Identity(), clean, labels, logits(stamped), labels,
                                 t['target'])
            out.update({f"{t['name']}/{k}": m[k] for k in ('ASR', 'ASR_all', 'PA')})
            out[f"{t['name']}/target"] = t['target']
    return out


def test_ibau_classifiers_are_scored_by_the_loop_as_before(encoder_file):
    from bmaiu_plugin.evaluation.probe import classifier_metrics
    from bmaiu_plugin.triggers import build_trigger
    model = IBAUDefense(TINY, encoder_checkpoint=encoder_file, K=2, portion=0.5,
                        head=dict(epochs=2, batch_size=8, lr=0.1))
    model.init_weights()
    assert model.probe_classifiers() == {} and model.defense_report() == {}
    batches = _batches()
    model.fit_head(batches)
    model.start_round(batches)
    params = [p for p in list(model.backbone.parameters()) + list(model.head.parameters())
              if p.requires_grad]
    model.train_step(batches[1], OptimWrapper(torch.optim.Adam(params, lr=1e-2)))
    model.end_round()
    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (300, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (300,), generator=g)
    triggers = [dict(name='badencoder', target=9, trigger=build_trigger(dict(
                    type='PatchTrigger', size=10, pattern='white', position=(21, 21)))),
                dict(name='rand', target=2, trigger=build_trigger(dict(
                    type='PatchTrigger', size=4, pattern='random', position='random'))),
                dict(name='auto', target=-1, trigger=build_trigger(dict(
                    type='PatchTrigger', size=4, pattern='white', position=(0, 0))))]
    clfs = model.probe_classifiers()
    assert set(clfs) == {'ibau_head', 'ibau_head_suspect'}
    assert clfs['ibau_head'][0] is model.backbone and clfs['ibau_head_suspect'][0] is model.suspect
    for name, (enc, head) in clfs.items():
        got = classifier_metrics(enc, head, images, labels, triggers, model.normalizer)
        raw = model.head if name == 'ibau_head' else model.head_suspect
        want = _old_head_metrics(model, images, labels, enc, raw, triggers)
        assert got == want, name
        assert 'auto/ASR' not in got and got['rand/target'] == 2
    assert model.defense_report()['ibau']['rounds'] == 1


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
])
def test_bad_values_raise_config_value_error(cls, kw, match):
    with pytest.raises(ConfigValueError, match=match):
        cls(TINY, **kw)


@pytest.mark.parametrize('pl1,match', [
    (dict(shadow_ratio=0), r'shadow_ratio must be in \(0, 1\]'),
    (dict(steps=3), 'unknown pl1 setting'),
    (dict(batch_size=1), 'batch_size must be'),
    (dict(lr=0), 'pl1 lr must be'),
    (dict(encoders='suspect'), 'encoders must be a non-empty list'),
    (dict(encoders=['a', 'a']), 'encoders must be a non-empty list'),
])
def test_bad_pl1_settings_fail_before_the_run(pl1, match):
    with pytest.raises(ConfigValueError, match=match):
        check_pl1_cfg(pl1)
    cfg = Config.fromfile(osp.join(CFG_DIR, 'decree_resnet18_cifar10.py'))
    cfg.test_cfg.pl1 = pl1
    with pytest.raises(ConfigValueError, match='test_cfg.pl1'):
        check_config(cfg)


def test_pl1_option_can_be_carried_switched_off():
    assert check_pl1_cfg(None) is None
    assert check_pl1_cfg(dict(enable=False, shadow_ratio=0.1)) is None
    assert check_pl1_cfg(dict(max_steps=5)) == dict(max_steps=5, shadow_ratio=0.1)
    assert check_pl1_cfg(dict(encoders=('suspect',)))['encoders'] == ['suspect']
    cfg = Config.fromfile(osp.join(CFG_DIR, 'clp_resnet18_u3_cifar10.py'))
    check_config(cfg)  # pl1 carried switched off passes the pre-flight


def test_save_hook_filename_must_stay_in_work_dir():
    with pytest.raises(ConfigValueError, match='plain file name'):
        SaveDefendedEncoderHook(filename='../elsewhere.pth')


@pytest.mark.parametrize('tool,config,args,match', [
    ('test', 'clp_resnet18_u3_cifar10.py', [], 'encoder_checkpoint=PATH'),
    ('test', 'decree_resnet18_cifar10.py', ['BAD'], 'not a readable encoder checkpoint'),
    ('test', 'clp_resnet18_u3_cifar10.py', ['GOOD', '--cfg-options', 'model.u=0'],
     'CLP u must be'),
    ('train', 'ibau_resnet18_1xb256-5e_cifar10.py',
     ['--cfg-options', 'encoder_checkpoint=GOOD', 'train_dataloader.dataset.ratio=0'] + TINY_OPTS,
     r'data ratio must be in \(0, 1\]'),
    ('train', 'ibau_resnet18_1xb256-5e_cifar10.py',
     ['--cfg-options', 'encoder_checkpoint=GOOD', 'model.backbone.base_channels=16'],
     'does not match the config'),
])
def test_tools_bad_input_is_one_error_line(tool, config, args, match, encoder_file, data_root,
                                           tmp_path, capsys):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    subst = dict(BAD=str(bad), GOOD=encoder_file)
    args = [subst.get(a, a.replace('GOOD', encoder_file)) for a in args]
    rc = tool_main(tool)([osp.join(CFG_DIR, config)] + args + ['--work-dir', str(tmp_path / 'wd')])
    assert rc == 2
    err = error_lines(capsys)
    assert len(err) == 1 and re.search(match, err[0]), err
