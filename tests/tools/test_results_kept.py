"""Nothing a user made is lost: earlier results, hand-written files, checkpoints, inputs.

Tiny real runs of ``tools/train.py`` / ``tools/test.py`` (in this process) on the fake CIFAR-10
folder, into work dirs that already hold an earlier run's files.
"""
import glob
import io
import json
import os
import os.path as osp
import textwrap
import time

import pytest
import torch
from mmpretrain.registry import MODELS

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.engine import results
from bmaiu_plugin.engine.results import publish, set_aside
from bmaiu_plugin.pipeline.runner import PipelineRunner, Step
from bmaiu_plugin.utils.checkpoint import load_state_dict_file
from conftest import REPO_ROOT, error_lines, tool_main

REPO = REPO_ROOT
TINY = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
            norm_cfg=dict(type='BN'))
CLP = osp.join(REPO, 'configs', 'defenses', 'clp_resnet18_u3_cifar10.py')
SIMCLR = osp.join(REPO, 'configs', 'selfsup', 'simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py')
TEST_OPTS = ['model.backbone.stem_channels=8', 'model.backbone.base_channels=8',
             'test_dataloader.num_workers=0', 'test_cfg.probe_dataloader.num_workers=0',
             'test_evaluator.epochs=2', 'test_cfg.probe_dataloader.dataset.indices=40']
TRAIN_OPTS = ['train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
              'train_dataloader.persistent_workers=False', 'train_dataloader.dataset.indices=16',
              'val_dataloader.num_workers=0', 'val_cfg.probe_dataloader.num_workers=0',
              'val_cfg.probe_dataloader.dataset.indices=40', 'val_evaluator.epochs=2',
              'train_cfg.val_interval=1', 'default_hooks.checkpoint.interval=1']
OLD = time.mktime((2020, 1, 2, 3, 4, 5, 0, 0, -1))  # mtime of the hand-written files


def _tree(root):
    """``{relative path: (size, mtime_ns)}`` of every file under ``root``."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            st = os.stat(osp.join(d, f))
            out[osp.relpath(osp.join(d, f), root)] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def encoder_file(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / 'suspect.pth')
    torch.save(MODELS.build(TINY).state_dict(), path)
    return path


def test_earlier_results_and_hand_written_files_are_kept(encoder_file, data_root, tmp_path):
    wd = tmp_path / 'clp'
    wd.mkdir()
    hand = {'metrics.json': b'{"BA": 1.0, "note": "by hand"}', 'defended_encoder.pth': b'mine'}
    for name, data in hand.items():
        (wd / name).write_bytes(data)
        os.utime(wd / name, (OLD, OLD))
    test = tool_main('test')
    runs = []
    for u in (2, 1):
        assert test([CLP, encoder_file, '--work-dir', str(wd), '--cfg-options', f'model.u={u}']
                    + TEST_OPTS) == 0
        runs.append(json.loads((wd / 'metrics.json').read_text()))
    assert runs[0]['clp']['u'] == 2 and runs[1]['clp']['u'] == 1
    # the hand-written files were moved into the folder named after their mtime, untouched
    for name, data in hand.items():
        assert (wd / '20200102_030405' / name).read_bytes() == data
    # every run's results are in its own folder; the top level is the latest run's copy
    kept = {n: sorted(glob.glob(str(wd / '2*' / n.replace('.', '*.'))))
            for n in ('metrics.json', 'defended_encoder.pth', 'defended_encoder.safetensors')}
    assert [len(v) for v in kept.values()] == [3, 3, 2], kept
    assert sorted(json.load(open(p)).get('clp', {}).get('u') for p in kept['metrics.json']
                  if 'by hand' not in open(p).read()) == [1, 2]
    for name in kept:
        newest = max(kept[name], key=osp.getmtime)
        assert open(newest, 'rb').read() == (wd / name).read_bytes(), name
    assert not glob.glob(str(wd / '.*.tmp'))
    # the .safetensors loads with the plugin's loader and equals the .pth, key for key
    pth = torch.load(wd / 'defended_encoder.pth', weights_only=True)
    st = load_state_dict_file(str(wd / 'defended_encoder.safetensors'))
    assert set(st) == set(pth) and all(torch.equal(st[k], pth[k]) for k in pth)
    enc = MODELS.build(TINY)
    enc.load_state_dict(st, strict=True)


def test_training_over_an_earlier_run_is_refused_then_resumed(data_root, tmp_path, capsys):
    wd = tmp_path / 'simclr'
    train = tool_main('train')
    # --resume with nothing to resume: a new run, and it says so
    assert train([SIMCLR, '--work-dir', str(wd), '--resume', '--cfg-options',
                  'train_cfg.max_epochs=1'] + TRAIN_OPTS) == 0
    assert f'--resume: no checkpoint in {wd}, starting a new run' in capsys.readouterr().out
    first = (wd / 'metrics.json').read_bytes()
    before = _tree(wd)
    capsys.readouterr()
    assert train([SIMCLR, '--work-dir', str(wd), '--cfg-options', 'train_cfg.max_epochs=2']
                 + TRAIN_OPTS) == 2
    assert error_lines(capsys) == [
        f'error: {wd} already holds a training run (last checkpoint: epoch_1.pth); pass '
        '--resume to continue it or --work-dir DIR for a new run']
    assert _tree(wd) == before  # nothing written
    assert train([SIMCLR, '--work-dir', str(wd), '--resume', '--cfg-options',
                  'train_cfg.max_epochs=2'] + TRAIN_OPTS) == 0
    assert osp.isfile(wd / 'epoch_1.pth') and osp.isfile(wd / 'epoch_2.pth')
    assert open(wd / 'last_checkpoint').read().strip().endswith('epoch_2.pth')
    assert any(open(p, 'rb').read() == first for p in glob.glob(str(wd / '2*/metrics*.json')))
    assert len(glob.glob(str(wd / '2*/metrics*.json'))) == 2


def test_work_dir_and_resume_mistakes_are_one_error(data_root, encoder_file, tmp_path, capsys,
                                                    monkeypatch):
    train, test = tool_main('train'), tool_main('test')
    a_file = tmp_path / 'a_file'
    a_file.write_text('not a folder')
    cases = [
        (train, [SIMCLR, '--work-dir', str(tmp_path / 'wd'), '--resume',
                 str(tmp_path / 'missing.pth')], '--resume checkpoint not found'),
        (train, [SIMCLR, '--work-dir', str(a_file)], 'is a file, not a folder'),
        (test, [CLP, encoder_file, '--work-dir', str(a_file)], 'is a file, not a folder'),
        (train, [SIMCLR, '--work-dir', str(a_file / 'sub')], 'cannot create the work dir'),
    ]
    for tool, argv, msg in cases:
        capsys.readouterr()
        assert tool(argv) == 2, argv
        err = error_lines(capsys)
        assert len(err) == 1 and msg in err[0], (argv, err)
    assert a_file.read_text() == 'not a folder' and not (tmp_path / 'wd').exists()
    with monkeypatch.context() as m:  # e.g. another user's folder
        m.setattr(results.os, 'access', lambda *a: False)
        assert test([CLP, encoder_file, '--work-dir', str(tmp_path)]) == 2
    assert f'the work dir {tmp_path} is not writable' in error_lines(capsys)[0]
    # a config inside the work dir would be overwritten by mmengine's copy of it
    own = tmp_path / 'own'
    own.mkdir()
    cfg = own / 'simclr.py'
    cfg.write_text(f'_base_ = [{SIMCLR!r}]\n')
    assert train([str(cfg), '--work-dir', str(own)]) == 2
    assert 'is inside the work dir' in error_lines(capsys)[0]
    assert cfg.read_text() == f'_base_ = [{SIMCLR!r}]\n'


class _Runner:
    def __init__(self, work_dir, log_dir):
        self.work_dir, self.log_dir = str(work_dir), str(log_dir)


def test_publish_and_set_aside(tmp_path):
    runs = [_Runner(tmp_path, tmp_path / d) for d in ('20240101_000000', '20240101_000100')]
    for r in runs:
        os.makedirs(r.log_dir)
    write = lambda text: (lambda p: open(p, 'w').write(text))  # noqa: E731
    assert publish(runs[0], 'm.json', write('a')) == str(tmp_path / 'm.json')
    assert publish(runs[0], 'm.json', write('b')) == str(tmp_path / 'm.json')  # same run
    assert publish(runs[1], 'm.json', write('c')) == str(tmp_path / 'm.json')
    assert [open(osp.join(r.log_dir, 'm.json')).read() for r in runs] == ['b', 'c']
    assert (tmp_path / 'm.json').read_text() == 'c'
    assert set_aside(str(tmp_path), 'm.json') is None  # a copy of a run's: stays
    (tmp_path / 'm.json').write_text('edited')
    os.utime(tmp_path / 'm.json', (OLD, OLD))
    publish(runs[1], 'm.json', write('d'))
    assert (tmp_path / '20200102_030405' / 'm.json').read_text() == 'edited'
    # a file of that name already in the mtime folder is not replaced either
    (tmp_path / 'm.json').write_text('edited again')
    os.utime(tmp_path / 'm.json', (OLD, OLD))
    assert set_aside(str(tmp_path), 'm.json') == str(tmp_path / '20200102_030405' / 'm.1.json')
    assert (tmp_path / '20200102_030405' / 'm.json').read_text() == 'edited'


FAKE_TRAIN = textwrap.dedent('''
    import argparse, json, os, sys
    p = argparse.ArgumentParser()
    p.add_argument('config')
    p.add_argument('--work-dir')
    p.add_argument('--resume', action='store_true')
    p.add_argument('--cfg-options', nargs='+', default=[])
    a = p.parse_args()
    last = os.path.join(a.work_dir, 'last_checkpoint')
    if os.path.isfile(last) and not a.resume:  # as tools/train.py
        print('error: already holds a training run', file=sys.stderr)
        sys.exit(2)
    with open(os.path.join(a.work_dir, 'calls.txt'), 'a') as f:
        f.write(json.dumps(sys.argv[1:]) + '\\n')
    n = len(open(os.path.join(a.work_dir, 'calls.txt')).readlines())
    json.dump({'BA': float(n)}, open(os.path.join(a.work_dir, 'metrics.json'), 'w'))
    ckpt = os.path.join(a.work_dir, 'epoch_1.pth')
    open(ckpt, 'w').write(f'weights of call {n}')
    open(last, 'w').write(ckpt)
''')


def test_pipeline_reruns_a_finished_training_step_without_deleting_it(tmp_path):
    tools = tmp_path / 'tools'
    tools.mkdir()
    (tools / 'train.py').write_text(FAKE_TRAIN)
    (tmp_path / 'c.py').write_text('{}')
    steps = [Step('s', 'clean', 'none', 'pretrain', 'train', str(tmp_path / 'c.py'),
                  str(tmp_path / 'wd' / 'a')),
             Step('s', 'x', 'none', 'attack', 'train', str(tmp_path / 'c.py'),
                  str(tmp_path / 'wd' / 'b'), upstream='s/clean/none')]
    run = lambda: PipelineRunner(steps, tools_dir=str(tools), stream=io.StringIO()).run()  # noqa
    assert [r.status for r in run()] == ['done', 'done']
    os.remove(steps[0].marker_file)  # interrupted: resumes; its dependent runs again, anew
    assert [r.status for r in run()] == ['done', 'done']
    assert '--resume' in open(osp.join(steps[0].work_dir, 'calls.txt')).readlines()[-1]
    b = steps[1].work_dir
    assert '--resume' not in open(osp.join(b, 'calls.txt')).readlines()[-1]
    moved = glob.glob(osp.join(b, '2*', 'epoch_1.pth'))
    assert len(moved) == 1 and open(moved[0]).read() == 'weights of call 1'
    assert open(osp.join(b, 'epoch_1.pth')).read() == 'weights of call 2'
    assert glob.glob(osp.join(b, '2*', 'metrics.json'))  # the earlier result, moved aside
    assert json.load(open(osp.join(b, 'metrics.json'))) == {'BA': 2.0}
