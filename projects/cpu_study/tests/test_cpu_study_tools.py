"""The CPU study's evaluator-side diagnostics and its driver script, as a user runs them.

Run from the repo root: ``pytest projects/cpu_study/tests``.  The diagnostics run on real
CIFAR-10 (``$BMAIU_DATA_ROOT`` or ``data/cifar10``; skipped when absent).
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', '..'))
STUDY = osp.join('projects', 'cpu_study')
TOOLS = osp.join(STUDY, 'tools')
PY = sys.executable
W16 = dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16,
           norm_cfg=dict(type='BN'))
MULTI4 = 'configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_cifar10.py'
BMAIU = 'configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py'
CIFAR_FILES = ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5',
               'test_batch']


def _has_cifar(root) -> bool:
    return bool(root) and all(
        osp.isfile(osp.join(root, 'cifar-10-batches-py', f)) for f in CIFAR_FILES)


@pytest.fixture(scope='module')
def cifar_root():
    """The folder holding ``cifar-10-batches-py/``; skips when there is none."""
    for root in (os.environ.get('BMAIU_DATA_ROOT'), osp.join(REPO, 'data', 'cifar10')):
        if _has_cifar(root):
            return osp.abspath(root)
    pytest.skip('real CIFAR-10 not found: set BMAIU_DATA_ROOT or build data/cifar10')


def run(args, data_root=None):
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': '1'}
    if data_root:
        env['BMAIU_DATA_ROOT'] = data_root
    return subprocess.run([PY] + args, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope='module')
def encoders(tmp_path_factory):
    """Two different randomly initialized width-16 encoders saved as plain state dicts."""
    from mmpretrain.registry import MODELS

    import bmaiu_plugin  # noqa: F401
    out = tmp_path_factory.mktemp('encoders')
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        enc = MODELS.build(W16)
        enc.init_weights()
        paths.append(str(out / f'enc{seed}.pth'))
        torch.save(enc.state_dict(), paths[-1])
    return paths


def test_implant_check_reports_every_target(cifar_root, encoders, tmp_path):
    """The same encoder as 'clean' and 'attacked': one probe, so the anchor's class agrees."""
    out = tmp_path / 'check.json'
    r = run([f'{TOOLS}/implant_check.py', MULTI4, encoders[0], encoders[0],
             '--n-train', '300', '--n-test', '200', '--out', str(out)], cifar_root)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out.read_text())['targets']
    assert [row['target'] for row in rows] == [0, 1, 2, 3]
    for row in rows:
        assert row['ref_pred'] == row['ref_pred_clean']
        assert len(row['reference']) == 1 and 0. <= row['ASR'] <= 100.
        assert -1. <= row['cos_anchor'] <= 1. and row['cos_other_anchors'] is not None
    assert r.stdout.count('target ') == 4
    # an existing report is never overwritten
    before = out.read_text()
    r = run([f'{TOOLS}/implant_check.py', MULTI4, encoders[0], encoders[1],
             '--out', str(out)], cifar_root)
    assert r.returncode == 2 and 'not overwriting' in r.stderr
    assert out.read_text() == before


@pytest.mark.parametrize('args, message', [
    ([BMAIU, 'E0', 'E0'], 'not a BadEncoder-family attack config'),
    ([MULTI4, 'E0', '/nonexistent/enc.pth'], 'not found'),
])
def test_implant_check_bad_input_is_one_error(cifar_root, encoders, args, message):
    args = [encoders[0] if a == 'E0' else a for a in args]
    r = run([f'{TOOLS}/implant_check.py'] + args, cifar_root)
    assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
    assert 'Traceback' not in r.stderr


def test_stage_geometry_chain(cifar_root, encoders, tmp_path):
    """f0 -> f1 -> f2 with f1 = f0: the first step is zero, the report is written once."""
    out = tmp_path / 'geometry.json'
    r = run([f'{TOOLS}/stage_geometry.py', BMAIU, f'f0={encoders[0]}',
             f'f1={encoders[0]}', f'f2={encoders[1]}', '--n-train', '300', '--n-test', '200',
             '--out', str(out)], cifar_root)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep['attack'] == 'badencoder' and rep['target'] == 9
    assert rep['weights']['all']['|f0->f1|'] == 0.
    assert rep['weights']['all']['|f1->f2|'] > 0.
    assert rep['encoders']['f0'] == rep['encoders']['f1']
    r = run([f'{TOOLS}/stage_geometry.py', BMAIU, f'f0={encoders[0]}'], cifar_root)
    assert r.returncode == 2 and 'at least 2 encoders' in r.stderr


def test_trigger_response_table(cifar_root, encoders):
    r = run([f'{TOOLS}/trigger_response.py', BMAIU, f'a={encoders[0]}', '--n', '64'],
            cifar_root)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith('| a |')]
    sys.path.insert(0, osp.join(REPO, TOOLS))
    try:
        from trigger_response import CANDIDATES
    finally:
        sys.path.pop(0)
    assert [row.split(' | ')[1] for row in rows] == list(CANDIDATES)
    for row in rows:  # shift and collapse are cosines
        shift = float(row.split(' | ')[2])
        collapse = float(row.split(' | ')[3].split()[0])
        assert -1. <= shift <= 1. and -1. <= collapse <= 1.


def test_collect_metrics_compact_row(tmp_path):
    """The one-row-per-BMAIU-run table of docs/results.md."""
    wd = tmp_path / 'b'
    wd.mkdir()
    (wd / 'metrics.json').write_text(json.dumps({
        'suspect': {'BA': 42.57, 'ASR': 84.99, 'PA': 6.34, 'triggers': 'badencoder'},
        'implanted': {'BA': 41.5, 'ASR': [54.31, 7.44], 'PA': [11.3, 38.8],
                      'triggers': ['badencoder', 'custom']},
        'defended': {'BA': 41.77, 'ASR': [51.7, 7.29], 'PA': [11.72, 39.21],
                     'triggers': ['badencoder', 'custom']},
        'trigger_shift_f1': 0.9987, 'BTS_gap': -0.0012, 'CCS': 0.9641}))
    r = run([f'{TOOLS}/collect_metrics.py', f'run={wd}', '--compact', 'badencoder'])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2] == ('| run | 42.57 | 41.77 | 84.99 | 54.31 | 51.70 | 11.72 | '
                                        '7.44 | 7.29 | 0.9987 | -0.0012 | 0.9641 |')


@pytest.mark.parametrize('args, message', [
    (['collect_metrics.py', 'x={tmp}/missing'], 'not found'),
    (['collect_metrics.py', 'x={tmp}/bad'], 'is not readable JSON'),
    (['stage_geometry.py', BMAIU, 'f0={enc}', 'f1={enc}', '--n-train', '0'],
     '--n-train must be >= 1'),
    (['extract_encoder.py', '{enc}', '--prefix', 'nope.', '--out', '{tmp}/out.pth'],
     "no keys under 'nope.'"),
])
def test_bad_input_is_one_error_line(tmp_path, args, message):
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'metrics.json').write_text('{not json')
    enc = tmp_path / 'enc.pth'
    torch.save({'backbone.w': torch.zeros(1)}, enc)
    args = [a.format(tmp=tmp_path, enc=enc) for a in args]
    r = run([f'{TOOLS}/{args[0]}'] + args[1:])
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith('error: ')]
    assert r.returncode == 2 and len(errors) == 1 and message in errors[0], r.stderr[-2000:]
    assert 'Traceback' not in r.stderr


@pytest.mark.parametrize('step, message', [
    ([], None),
    (['nope'], 'unknown step nope'),
    (['bmaiu'], 'bmaiu needs a variant'),
    (['bmaiu', 'nope'], 'unknown variant nope'),
    (['bmaiu', 'default'], 'suspect encoder'),
    (['probe_clean'], 'clean encoder'),
    (['observe', 'AT1'], '4-trigger encoder'),
    (['f1', 'long_implant_trigger8'], 'no checkpoint in'),
    (['unlearn', 'long_implant_trigger8', 'default'], 'implanted encoder f1'),
    (['defense', 'nope'], 'unknown defense nope'),
    (['poison_long', 'ctrl'], 'POISON_EPOCHS must be an integer of at least 2'),
])
def test_cpu_study_refuses_a_missing_input_in_one_line(tmp_path, step, message):
    """No run starts (``PY=false`` would fail it): the script stops at its own checks."""
    env = {**os.environ, 'ROOT': str(tmp_path / 'study'), 'PY': 'false', 'POISON_EPOCHS': '1'}
    r = subprocess.run(['bash', osp.join(STUDY, 'cpu_study.sh')] + step, cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    if message is None:  # no step: the usage, on stdout
        assert 'usage: bash projects/cpu_study/cpu_study.sh STEP' in r.stdout and not r.stderr
        return
    assert r.stderr.count('\n') == 1 and r.stderr.startswith('error: ') and message in r.stderr, \
        r.stderr


def test_every_bmaiu_run_is_the_ablation_model(tmp_path):
    """The BMAIU rows train ``BMAIUAblation`` from the study's module, the repo on the path."""
    root = tmp_path / 'study'
    (root / 'badencoder').mkdir(parents=True)
    (root / 'badencoder' / 'epoch_10.pth').write_bytes(b'')
    env = {**os.environ, 'ROOT': str(root), 'PY': 'echo'}
    r = subprocess.run(['bash', osp.join(STUDY, 'cpu_study.sh'), 'bmaiu', 'paper_anchor'],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    argv = r.stdout.split()
    assert argv[:2] == ['tools/train.py', BMAIU]
    assert 'model.type=BMAIUAblation' in argv
    assert 'custom_imports.imports=[projects.cpu_study.bmaiu_ablation]' in argv
    assert 'custom_imports.allow_failed_imports=False' in argv
    assert argv[-2:] == ['model.implant_target=student', 'model.repulsion_anchor=student']
    assert f'{root}/bmaiu_paper_anchor' in argv


def test_research_rows_train_from_a_config_with_the_search_hook(tmp_path):
    """A row re-searching its pattern gets ``TriggerSearchHook(interval=N)`` as third hook."""
    from mmengine.config import Config
    root = tmp_path / 'study'
    (root / 'badencoder').mkdir(parents=True)
    (root / 'badencoder' / 'epoch_10.pth').write_bytes(b'')
    env = {**os.environ, 'ROOT': str(root), 'PY': 'echo'}
    r = subprocess.run(['bash', osp.join(STUDY, 'cpu_study.sh'), 'bmaiu',
                        'searched10_adv_unlearn_only'], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    argv = r.stdout.split()
    assert argv[1] == str(root / 'configs' / 'bmaiu_research-every-2.py')
    assert 'model.type=BMAIUAblation' in argv
    cfg = Config.fromfile(argv[1])
    assert [h['type'] for h in cfg.custom_hooks] == ['PrepareModelHook', 'BMAIUStageHook',
                                                      'TriggerSearchHook']
    assert cfg.custom_hooks[2]['interval'] == 2
    assert cfg.model == Config.fromfile(osp.join(REPO, BMAIU)).model
