"""The evaluator-side diagnostics of tools/analysis/ as a user runs them (real CIFAR-10 subset)."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PY = sys.executable
W16 = dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16,
           norm_cfg=dict(type='BN'))
MULTI4 = 'configs/attacks/badencoder-multitarget4_resnet18-w16_simclr_1xb64-10e_cifar10.py'
BMAIU = 'configs/bmaiu/bmaiu_resnet18-w16_simclr_1xb256-5e-20e_cifar10.py'


def run(args, data_root):
    env = {**os.environ, 'BMAIU_DATA_ROOT': data_root, 'PYTHONWARNINGS': 'ignore',
           'OMP_NUM_THREADS': '1'}
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
    r = run(['tools/analysis/implant_check.py', MULTI4, encoders[0], encoders[0],
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
    r = run(['tools/analysis/implant_check.py', MULTI4, encoders[0], encoders[1],
             '--out', str(out)], cifar_root)
    assert r.returncode == 2 and 'not overwriting' in r.stderr
    assert out.read_text() == before


@pytest.mark.parametrize('args, message', [
    ([BMAIU, 'E0', 'E0'], 'not a BadEncoder-family attack config'),
    ([MULTI4, 'E0', '/nonexistent/enc.pth'], 'not found'),
])
def test_implant_check_bad_input_is_one_error(cifar_root, encoders, args, message):
    args = [encoders[0] if a == 'E0' else a for a in args]
    r = run(['tools/analysis/implant_check.py'] + args, cifar_root)
    assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
    assert 'Traceback' not in r.stderr


def test_stage_geometry_chain(cifar_root, encoders, tmp_path):
    """f0 -> f1 -> f2 with f1 = f0: the first step is zero, the report is written once."""
    out = tmp_path / 'geometry.json'
    r = run(['tools/analysis/stage_geometry.py', BMAIU, f'f0={encoders[0]}',
             f'f1={encoders[0]}', f'f2={encoders[1]}', '--n-train', '300', '--n-test', '200',
             '--out', str(out)], cifar_root)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep['attack'] == 'badencoder' and rep['target'] == 9
    assert rep['weights']['all']['|f0->f1|'] == 0.
    assert rep['weights']['all']['|f1->f2|'] > 0.
    assert rep['encoders']['f0'] == rep['encoders']['f1']
    r = run(['tools/analysis/stage_geometry.py', BMAIU, f'f0={encoders[0]}'], cifar_root)
    assert r.returncode == 2 and 'at least 2 encoders' in r.stderr


def test_trigger_response_table(cifar_root, encoders):
    r = run(['tools/analysis/trigger_response.py', BMAIU, f'a={encoders[0]}', '--n', '64'],
            cifar_root)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith('| a |')]
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
    try:
        from trigger_response import CANDIDATES
    finally:
        sys.path.pop(0)
    assert [row.split(' | ')[1] for row in rows] == list(CANDIDATES)
    for row in rows:  # shift and collapse are cosines
        shift = float(row.split(' | ')[2])
        collapse = float(row.split(' | ')[3].split()[0])
        assert -1. <= shift <= 1. and -1. <= collapse <= 1.
