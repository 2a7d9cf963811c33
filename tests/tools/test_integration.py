"""End-to-end runs as a user makes them: tools, mim, two-process DDP on CPU, real CIFAR-10."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT  # noqa: E402

REPO = REPO_ROOT
PY = sys.executable
MIM = osp.join(osp.dirname(PY), 'mim')
SIMCLR_W16 = 'configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py'
TINY = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.num_workers=0',
        'val_cfg.probe_dataloader.num_workers=0', 'val_evaluator.epochs=2']


def run(cmd, data_root, timeout=300, cwd=REPO):
    env = {**os.environ, 'BMAIU_DATA_ROOT': data_root, 'PYTHONWARNINGS': 'ignore',
           'OMP_NUM_THREADS': '1'}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_train_tool_bad_input_is_one_error_line(fake_cifar, tmp_path):
    root, _ = fake_cifar
    cfg = 'configs/bmaiu_simclr_cifar10.py'
    cases = [
        ([], 'encoder_checkpoint=PATH'),
        (['--cfg-options', f'encoder_checkpoint={tmp_path}/missing.pth'], 'not found'),
    ]
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint at all')
    cases.append((['--cfg-options', f'encoder_checkpoint={bad}'],
                  'not a readable encoder checkpoint'))
    ok = tmp_path / 'enc.pth'
    from mmpretrain.registry import MODELS
    import bmaiu_plugin  # noqa: F401
    torch.save(MODELS.build(dict(type='ResNet_CIFAR', depth=18, base_channels=8,
                                 stem_channels=8)).state_dict(), ok)
    cases += [
        (['--cfg-options', f'encoder_checkpoint={ok}'], 'does not match the config'),
        (['--cfg-options', f'encoder_checkpoint={ok}', 'model.custom_trigger.size=40'],
         '40x40 trigger does not fit a 32x32 image'),
        (['--cfg-options', f'encoder_checkpoint={ok}', 'train_dataloader.dataset.ratio=0'],
         'data ratio must be in (0, 1]'),
    ]
    for extra, msg in cases:
        r = run([PY, 'tools/train.py', cfg, '--work-dir', str(tmp_path / 'wd')] + extra, root)
        assert r.returncode == 2, (extra, r.stderr[-2000:])
        err = [ln for ln in r.stderr.splitlines() if ln.startswith('error:')]
        assert len(err) == 1 and msg in err[0], (extra, r.stderr[-2000:])
        assert 'Traceback' not in r.stderr, (extra, r.stderr[-2000:])


def test_missing_dataset_is_one_error_line(tmp_path):
    r = run([PY, 'tools/train.py', SIMCLR_W16, '--work-dir', str(tmp_path / 'wd')],
            str(tmp_path / 'no_data'))
    assert r.returncode == 2
    assert 'CIFAR-10 not found in' in r.stderr and 'BMAIU_DATA_ROOT' in r.stderr
    assert 'Traceback' not in r.stderr


@pytest.mark.slow
@pytest.mark.skipif(not osp.isfile(MIM), reason='mim not installed next to this python')
def test_mim_train_two_processes_and_mim_test(fake_cifar, tmp_path):
    """``mim train --launcher pytorch --gpus 2`` on CPU (gloo), then ``mim test`` an encoder."""
    root, _ = fake_cifar
    wd = tmp_path / 'ddp'
    r = run([MIM, 'train', 'bmaiu_plugin', SIMCLR_W16, '--launcher', 'pytorch', '--gpus', '2',
             '--work-dir', str(wd), '--cfg-options', 'train_dataloader.batch_size=8'] + TINY,
            root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert 'world_size: 2' in log or "'world_size': 2" in log or 'Distributed training: True' in log
    m = json.load(open(wd / 'metrics.json'))
    assert 0. <= m['BA'] <= 100.
    # probe the trained encoder as a user-supplied file (tensors only)
    ckpt = torch.load(wd / 'epoch_1.pth', map_location='cpu', weights_only=False)
    enc = {k[len('backbone.'):]: v for k, v in ckpt['state_dict'].items()
           if k.startswith('backbone.')}
    from safetensors.torch import save_file
    save_file(enc, str(tmp_path / 'enc.safetensors'))
    r = run([MIM, 'test', 'bmaiu_plugin', 'configs/eval/probe_resnet18-w16_cifar10.py',
             '--checkpoint', str(tmp_path / 'enc.safetensors'), '--work-dir', str(tmp_path / 't'),
             '--cfg-options', 'evaluate_attack=badencoder', 'test_evaluator.epochs=2',
             'test_cfg.probe_dataloader.dataset.indices=40'], root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    t = json.load(open(tmp_path / 't' / 'metrics.json'))
    assert set(t) >= {'BA', 'ASR', 'PA', 'ASR_all'} and t['triggers'] == 'badencoder'
    assert t['target'] == 9


@pytest.mark.slow
@pytest.mark.integration
def test_short_simclr_on_real_cifar10_then_probe(cifar_root, tmp_path):
    """A short real SimCLR run, then the linear probe: BA clearly above chance (10 %).

    Measured when written: BA 22.0 % (2,048 training images, 2 epochs, width 16; probe on
    2,000 train / 1,000 test images; chance is 10 %).  The bound leaves room for CPU
    nondeterminism.
    """
    from mmengine.config import Config
    from mmengine.runner import Runner

    from bmaiu_plugin.apis import finalize_config
    cfg = Config.fromfile(osp.join(REPO, SIMCLR_W16))
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.indices = 2048
    cfg.train_dataloader.batch_size = 256
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_cfg.max_epochs = 2
    cfg.train_cfg.val_interval = 2
    cfg.param_scheduler = []
    cfg.val_cfg.probe_dataloader.dataset.indices = 2000
    cfg.val_cfg.probe_dataloader.num_workers = 0
    cfg.val_dataloader.dataset.indices = 1000
    cfg.val_dataloader.num_workers = 0
    cfg.evaluate_attack = 'badencoder'
    cfg.default_hooks.logger.interval = 1
    cfg = finalize_config(cfg)
    Runner.from_cfg(cfg).train()
    m = json.load(open(tmp_path / 'metrics.json'))
    assert m['BA'] > 17., m
    assert 0. <= m['ASR'] <= 100. and m['triggers'] == 'badencoder'


@pytest.mark.skipif(not osp.isfile(MIM), reason='mim not installed next to this python')
def test_mim_run_plugin_tool(tmp_path):
    """``mim run bmaiu_plugin TOOL`` finds the plugin's tools (here the pipeline's plan)."""
    cfg = osp.join(REPO, 'configs', 'pipelines', 'quickstart.py')
    r = run([MIM, 'run', 'bmaiu_plugin', 'pipeline', cfg, '--dry-run', '--work-dir',
             str(tmp_path / 'wd')], str(tmp_path), timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'pipeline: ' in r.stdout and 'tools/test.py' in r.stdout
    assert not (tmp_path / 'wd' / 'results.csv').exists()  # a plan only: nothing ran
