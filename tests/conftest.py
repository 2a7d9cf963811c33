"""Shared fixtures: the real CIFAR-10 folder (skipped when absent) and a tiny fake one."""
import os
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CIFAR_FOLDER = 'cifar-10-batches-py'
CIFAR_FILES = ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5',
               'test_batch']
CIFAR_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                 'ship', 'truck']

#: Sizes of the fake CIFAR-10 folder.
FAKE_PER_TRAIN_BATCH = 8
FAKE_TEST = 100


#: Session fixtures that train an encoder: the tests using them share one pytest-xdist
#: worker (``-n 2 --dist loadgroup``), so each encoder is trained once per run.
TRAINED_FIXTURES = ('clean_encoder', 'badencoder_suspect', 'family_suspect')


def pytest_collection_modifyitems(config, items):
    for item in items:
        if set(TRAINED_FIXTURES) & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.xdist_group('trained_encoders'))


@pytest.fixture(autouse=True)
def _few_threads():
    """The test machine has 2 cores shared with a training job: keep torch on one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _has_cifar(root) -> bool:
    return bool(root) and all(osp.isfile(osp.join(root, CIFAR_FOLDER, f)) for f in CIFAR_FILES)


@pytest.fixture(scope='session')
def cifar_root():
    """The folder holding ``cifar-10-batches-py/``.

    ``$BMAIU_DATA_ROOT`` if set and complete, else ``<repo>/data/cifar10``; skips otherwise.
    """
    tried = []
    env = os.environ.get('BMAIU_DATA_ROOT')
    if env:
        tried.append(osp.abspath(env))
        if _has_cifar(env):
            return osp.abspath(env)
    local = osp.join(REPO_ROOT, 'data', 'cifar10')
    tried.append(local)
    if _has_cifar(local):
        return local
    pytest.skip(f'real CIFAR-10 not found (looked for {CIFAR_FOLDER}/ in {", ".join(tried)}); '
                'set BMAIU_DATA_ROOT or build data/cifar10')


def fake_cifar_arrays(n: int, seed: int):
    """``(data (n, 3072) uint8, labels list)`` deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in (np.arange(n) + seed) % 10]
    return data, labels


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, then eval mode, so that a wrong
    key, order or normalization changes a model's outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    model.eval()
    return model


def build_model(cfg: dict) -> torch.nn.Module:
    """A model from mmpretrain's registry (the plugin's modules registered)."""
    import bmaiu_plugin  # noqa: F401
    from mmpretrain.registry import MODELS
    return MODELS.build(dict(cfg))


def write_fake_cifar(root: str, per_train_batch: int = FAKE_PER_TRAIN_BATCH,
                     n_test: int = FAKE_TEST) -> dict:
    """Write a CIFAR-10-format folder under ``root``; return the arrays written per file."""
    folder = osp.join(root, CIFAR_FOLDER)
    os.makedirs(folder, exist_ok=True)
    written = {}
    for i, name in enumerate(CIFAR_FILES):
        n = n_test if name == 'test_batch' else per_train_batch
        data, labels = fake_cifar_arrays(n, seed=i)
        with open(osp.join(folder, name), 'wb') as f:
            # str keys: the official files are Python-2 pickles whose keys mmpretrain's
            # ``pickle.loads(..., encoding='latin1')`` reads as str ('data', 'labels'); bytes
            # keys (b'data') would stay bytes and mmpretrain's entry['data'] would not find them
            pickle.dump({'batch_label': name, 'data': data, 'labels': labels,
                         'filenames': [f'{j}.png' for j in range(n)]}, f, protocol=2)
        written[name] = (data, labels)
    with open(osp.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump({'label_names': list(CIFAR_CLASSES), 'num_cases_per_batch': per_train_batch,
                     'num_vis': 3072}, f, protocol=2)
    return written


@pytest.fixture
def fake_cifar(tmp_path):
    """``(root, written)``: a tiny fake CIFAR-10 folder (5 x 8 train, 100 test images)."""
    root = tmp_path / 'fake_cifar'
    written = write_fake_cifar(str(root))
    return str(root), written


STOCK_MMENGINE_WRITER = """
import sys, torch
from collections import OrderedDict
from mmengine.logging import MessageHub   # no bmaiu_plugin here: stock mmengine pickling
hub = MessageHub(name='stock')
hub.update_scalar('train/loss', 0.75)
torch.save({'meta': {'epoch': 1},
            'state_dict': OrderedDict([('backbone.w', torch.arange(3.))]),
            'message_hub': hub.state_dict()}, sys.argv[1])
"""


@pytest.fixture(scope='session')
def stock_mmengine_ckpt(tmp_path_factory):
    """An mmengine-style checkpoint (with a message_hub of HistoryBuffers) written by a process
    that never imported bmaiu_plugin, i.e. with stock mmengine's pickling."""
    import subprocess
    import sys
    path = str(tmp_path_factory.mktemp('stock_mmengine') / 'epoch_1.pth')
    subprocess.run([sys.executable, '-c', STOCK_MMENGINE_WRITER, path], check=True, timeout=120,
                   capture_output=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    return path


def tool_main(name: str):
    """``main`` of ``tools/<name>.py``, run in this process (no second interpreter start-up)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f'_tool_{name}',
                                                  osp.join(REPO_ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def error_lines(capsys):
    """The ``error:`` lines a tool wrote to stderr so far."""
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith('error:')]


def _one_thread(fn, *args, **kwargs):
    """``fn`` on one torch thread (session fixtures run before the autouse fixture): the float
    results, and so the measured numbers, do not depend on the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope='session')
def asr_data(cifar_root):
    """Real CIFAR-10 images of the attack configs' classes: pretraining, probe and test sets
    (``attack_setup.py``)."""
    from types import SimpleNamespace

    from attack_setup import NUM_PRETRAIN, NUM_PROBE, NUM_TEST, cifar_subset
    train_x, train_y = cifar_subset(cifar_root, 'train', NUM_PRETRAIN)
    test_x, test_y = cifar_subset(cifar_root, 'test', NUM_TEST)
    return SimpleNamespace(root=cifar_root, pretrain_x=train_x, probe_x=train_x[:NUM_PROBE],
                           probe_y=train_y[:NUM_PROBE], test_x=test_x, test_y=test_y)


@pytest.fixture(scope='session')
def clean_encoder(asr_data, tmp_path_factory):
    """The briefly SimCLR-pretrained clean encoder: the module and its state-dict file."""
    from types import SimpleNamespace

    from attack_setup import PRETRAIN, simclr_pretrain
    encoder = _one_thread(simclr_pretrain, asr_data.pretrain_x, **PRETRAIN)
    path = str(tmp_path_factory.mktemp('clean_encoder') / 'encoder.pth')
    torch.save(encoder.state_dict(), path)
    return SimpleNamespace(encoder=encoder, path=path)


@pytest.fixture(scope='session')
def badencoder_suspect(asr_data, clean_encoder, tmp_path_factory):
    """The clean encoder after the BadEncoder config's attack (``attack_setup.ATTACK`` budget):
    the attack model and the backdoored backbone's state-dict file."""
    from types import SimpleNamespace

    from attack_setup import ATTACK, BADENCODER_CONFIG, run_finetune_attack
    model = _one_thread(run_finetune_attack, BADENCODER_CONFIG, clean_encoder.path,
                        asr_data.root, **ATTACK)
    path = str(tmp_path_factory.mktemp('badencoder') / 'suspect.pth')
    torch.save(model.backbone.state_dict(), path)
    return SimpleNamespace(model=model, path=path)


@pytest.fixture(scope='session')
def family_suspect(asr_data, clean_encoder, tmp_path_factory):
    """``family_suspect(family)``: the clean encoder after
    ``configs/attacks/badencoder-<family>_*`` at the attack tests' budget (``steps`` per
    :data:`attack_setup.FAMILY_STEPS`), built once per run: the attack model and the
    backdoored backbone's state-dict file."""
    from types import SimpleNamespace

    from attack_setup import ATTACK, FAMILY_STEPS, family_config, run_finetune_attack
    built = {}

    def get(family: str):
        if family not in built:
            model = _one_thread(run_finetune_attack, family_config(family), clean_encoder.path,
                                asr_data.root, **dict(ATTACK, steps=FAMILY_STEPS[family]))
            path = str(tmp_path_factory.mktemp(f'badencoder-{family}') / 'suspect.pth')
            torch.save(model.backbone.state_dict(), path)
            built[family] = SimpleNamespace(model=model, path=path)
        return built[family]
    return get


@pytest.fixture
def data_root(fake_cifar, monkeypatch):
    """The fake CIFAR-10 folder, as ``$BMAIU_DATA_ROOT`` for the tools a test runs."""
    root, _ = fake_cifar
    monkeypatch.setenv('BMAIU_DATA_ROOT', root)
    return root
