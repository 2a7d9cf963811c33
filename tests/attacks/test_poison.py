"""PoisonedDataset (SSL-Backdoor / CTRL data poisoning), PoisonRecordHook and the attack configs."""
import glob
import json
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.apis import finalize_config
from bmaiu_plugin.attacks import PoisonedDataset
from bmaiu_plugin.datasets import BackdoorCIFAR10, RatioSubset
from bmaiu_plugin.attacks.poison import PoisonRecordHook, find_poisoned
from bmaiu_plugin.registry import DATASETS, HOOKS
from bmaiu_plugin.triggers import CTRLTrigger, PatchTrigger
from bmaiu_plugin.utils.errors import ConfigValueError
from conftest import REPO_ROOT, write_fake_cifar

ATTACK_CONFIGS = sorted(osp.relpath(p, REPO_ROOT) for pat in ('sslbackdoor_*.py', 'ctrl_*.py')
                        for p in glob.glob(osp.join(REPO_ROOT, 'configs', 'attacks', pat)))
#: 5 train batches of 200 with labels cycling over the 10 classes: 1000 items, 100 per class
PER_BATCH = 200
N_ITEMS = 5 * PER_BATCH
PER_CLASS = N_ITEMS // 10


@pytest.fixture(scope='module')
def fake_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('poison_cifar') / 'cifar')
    write_fake_cifar(root, per_train_batch=PER_BATCH, n_test=10)
    return root


@pytest.fixture(scope='module')
def clean(fake_root):
    """The wrapped dataset (never modified by the wrappers built on it)."""
    return BackdoorCIFAR10(data_root=fake_root, split='train', check_md5=False)


@pytest.fixture(scope='module')
def htba_png(tmp_path_factory):
    """An 80x80 RGB PNG standing in for an HTBA trigger."""
    from PIL import Image
    path = tmp_path_factory.mktemp('trig') / 'trigger_10.png'
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(path)
    return str(path)


def _white(size=4, position=(3, 5)):
    return dict(type='PatchTrigger', size=size, pattern='white', position=position)


def _poison(clean, **kw):
    args = dict(dataset=clean, trigger=_white(), target_class=0, poison_rate=0.5,
                rate_of='class', selection='random', seed=0)
    args.update(kw)
    return PoisonedDataset(**args)


def test_registered_names():
    assert DATASETS.get('PoisonedDataset') is PoisonedDataset
    assert HOOKS.get('PoisonRecordHook') is PoisonRecordHook


def test_selection_is_seeded(clean):
    a, b, c = _poison(clean, seed=0), _poison(clean, seed=0), _poison(clean, seed=1)
    assert np.array_equal(a.poisoned_indices, b.poisoned_indices)
    assert not np.array_equal(a.poisoned_indices, c.poisoned_indices)
    assert np.all(np.diff(a.poisoned_indices) > 0)  # sorted, unique
    for i in (0, 17, N_ITEMS - 1):
        assert np.array_equal(a.get_data_info(i)['img'], b.get_data_info(i)['img'])


def test_only_selected_target_items_change(clean):
    ds = _poison(clean)
    assert len(ds) == len(clean) and ds.metainfo == clean.metainfo
    chosen = set(ds.poisoned_indices.tolist())
    for i in range(len(ds)):
        got, ref = ds.get_data_info(i), clean.get_data_info(i)
        assert got['gt_label'] == ref['gt_label']  # labels are kept
        if i in chosen:
            assert ref['gt_label'] == 0 and ds.is_poisoned(i)
            assert not np.array_equal(got['img'], ref['img'])
        else:
            assert np.array_equal(got['img'], ref['img'])


def test_fixed_patch_region_equals_pattern(clean):
    ds = _poison(clean, trigger=_white(size=4, position=(3, 5)))
    inside = np.zeros((32, 32), bool)
    inside[3:7, 5:9] = True
    for i in ds.poisoned_indices[:10]:
        got, ref = ds.get_data_info(i)['img'], clean.get_data_info(i)['img']
        assert got.dtype == np.uint8 and got.shape == (32, 32, 3)
        assert np.all(got[inside] == 255)
        assert np.array_equal(got[~inside], ref[~inside])
    assert np.all(ds.poison_positions == [3, 5])


def test_random_position_in_ssl_backdoor_band(clean, htba_png):
    trig = PatchTrigger(size=8, pattern=htba_png, position='random', area=(0.25, 0.75))
    ds = _poison(clean, trigger=trig)
    pos = ds.poison_positions
    assert pos.shape == (len(ds.poisoned_indices), 2)
    assert pos.min() >= 8 and pos.max() <= 16  # patch inside rows/cols [8, 24)
    assert len({tuple(p) for p in pos.tolist()}) > 1  # one position per image
    pattern = trig.pattern.permute(1, 2, 0).numpy().astype(np.uint8)
    for i, (y, x) in zip(ds.poisoned_indices, pos):
        got, ref = ds.get_data_info(i)['img'], clean.get_data_info(i)['img']
        assert np.array_equal(got[y:y + 8, x:x + 8], pattern)
        mask = np.ones((32, 32), bool)
        mask[y:y + 8, x:x + 8] = False
        assert np.array_equal(got[mask], ref[mask])
    again = _poison(clean, trigger=trig)
    assert np.array_equal(again.poison_positions, pos)


def test_first_selection(clean):
    ds = _poison(clean, selection='first', poison_rate=0.01, rate_of='dataset')
    target = [i for i in range(len(clean)) if clean.get_data_info(i)['gt_label'] == 0]
    assert ds.poisoned_indices.tolist() == target[:10]


@pytest.mark.parametrize('rate,rate_of,count', [
    (0.01, 'dataset', 10),     # CTRL: 1 % of the dataset = 10 % of the target class
    (0.1, 'dataset', 100),     # the whole class
    (0.5, 'class', 50),        # SSL-Backdoor: 50 % of the target class
    (1.0, 'class', PER_CLASS),
    (0.29, 'class', 29),       # floor without float surprises (0.29 * 100 = 28.999...)
])
def test_counts(clean, rate, rate_of, count):
    ds = _poison(clean, poison_rate=rate, rate_of=rate_of, target_class=3)
    assert len(ds.poisoned_indices) == count
    assert ds.num_target_class == PER_CLASS
    assert all(clean.get_data_info(int(i))['gt_label'] == 3 for i in ds.poisoned_indices)


def _snapshot(folder):
    return {p: (os.stat(p).st_mtime_ns, open(p, 'rb').read())
            for p in sorted(glob.glob(osp.join(folder, '**', '*'), recursive=True))
            if osp.isfile(p)}


def test_record_json_and_data_untouched(fake_root, tmp_path):
    before = _snapshot(fake_root)
    ds_clean = BackdoorCIFAR10(data_root=fake_root, split='train', check_md5=False)
    rec_path = tmp_path / 'work' / 'nested' / 'poison.json'
    ds = PoisonedDataset(ds_clean, trigger=dict(type='CTRLTrigger', magnitude=100),
                         target_class=2, poison_rate=0.3, rate_of='class', seed=5,
                         work_dir_record=str(rec_path))
    rec = json.loads(rec_path.read_text())
    assert rec['indices'] == ds.poisoned_indices.tolist() and len(rec['indices']) == 30
    assert rec['seed'] == 5 and rec['target_class'] == 2 and rec['target_class_name'] == 'bird'
    assert rec['num_poisoned'] == 30 and rec['num_target_class'] == PER_CLASS
    assert rec['num_items'] == N_ITEMS and rec['rate_of'] == 'class'
    assert 'CTRLTrigger' in rec['trigger'] and rec['trigger_cfg']['magnitude'] == 100
    assert os.listdir(tmp_path) == ['work'] and os.listdir(rec_path.parent) == ['poison.json']
    assert _snapshot(fake_root) == before  # same files, bytes and mtimes
    # the wrapped dataset still serves the clean images
    ref = BackdoorCIFAR10(data_root=fake_root, split='train', check_md5=False)
    i = int(ds.poisoned_indices[0])
    assert np.array_equal(ds_clean.get_data_info(i)['img'], ref.get_data_info(i)['img'])


@pytest.mark.parametrize('kw,msg', [
    (dict(poison_rate=0), 'poison_rate must be a fraction in (0, 1], got 0'),
    (dict(poison_rate=-0.1), 'poison_rate must be a fraction in (0, 1]'),
    (dict(poison_rate=1.5), 'poison_rate must be a fraction in (0, 1]'),
    (dict(poison_rate=0.2, rate_of='dataset'),
     'asks for 200 images, but target class 0 (airplane) has only 100'),
    (dict(poison_rate=0.001, rate_of='class'), 'selects no image'),
    (dict(target_class=10), 'target_class 10 is not a class of the dataset (10 classes'),
    (dict(target_class=-1), 'target_class -1 is not a class'),
    (dict(rate_of='classes'), "rate_of must be 'dataset' or 'class'"),
    (dict(selection='last'), "selection must be 'random' or 'first'"),
    (dict(trigger=_white(size=40, position='random')), '40x40 trigger does not fit a 32x32'),
    (dict(trigger=dict(type='CTRLTrigger', window=24, positions=((1, 1),))),
     'does not tile a 32x32'),
])
def test_bad_values(clean, kw, msg):
    with pytest.raises(ConfigValueError) as e:
        _poison(clean, **kw)
    assert msg in str(e.value)


def test_ctrl_poisoned_images_are_close_uint8(clean):
    ds = _poison(clean, trigger=CTRLTrigger(magnitude=100), poison_rate=0.01,
                 rate_of='dataset', selection='first')
    assert len(ds.poisoned_indices) == 10 and ds.poison_positions is None
    for i in ds.poisoned_indices:
        got, ref = ds.get_data_info(i)['img'], clean.get_data_info(i)['img']
        assert got.dtype == np.uint8
        diff = np.abs(got.astype(int) - ref.astype(int))
        assert 0 < diff.max() <= 23
        assert (diff > 0).mean() > 0.5  # a full-image texture, not a patch


def test_getitem_runs_pipeline_on_poisoned_image(fake_root):
    wrapped = dict(type='BackdoorCIFAR10', data_root=fake_root, split='train', check_md5=False,
                   pipeline=[dict(type='PackInputs')])
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dict(type='PoisonedDataset', dataset=wrapped, trigger=_white(),
                                 target_class=1, poison_rate=0.1, rate_of='class'))
    i = int(ds.poisoned_indices[0])
    item = ds[i]
    expect = torch.from_numpy(ds.get_data_info(i)['img']).permute(2, 0, 1)
    assert torch.equal(item['inputs'], expect) and item['inputs'][:, 3:7, 5:9].eq(255).all()
    assert int(item['data_samples'].gt_label) == 1


def _runner(tmp_path, dataset):
    from mmengine.runner import BaseLoop

    class Loop(BaseLoop):
        def run(self):
            pass

    loop = Loop(SimpleNamespace(), torch.utils.data.DataLoader(dataset, batch_size=2))
    logs = []
    return SimpleNamespace(_train_loop=loop, work_dir=str(tmp_path),
                           logger=SimpleNamespace(info=logs.append)), logs


def test_record_hook_writes_through_wrappers(clean, tmp_path):
    ds = _poison(clean, poison_rate=0.2)
    wrapped = RatioSubset(ds, ratio=0.5)
    assert find_poisoned(wrapped) == [ds]
    runner, logs = _runner(tmp_path, wrapped)
    PoisonRecordHook().before_run(runner)
    rec = json.loads((tmp_path / 'poison_record.json').read_text())
    assert rec['indices'] == ds.poisoned_indices.tolist() and rec['seed'] == 0
    assert 'poison_record.json' in logs[0]


def test_record_hook_ignores_clean_and_test_runs(clean, tmp_path):
    runner, _ = _runner(tmp_path, clean)
    PoisonRecordHook().before_run(runner)
    # a test run: the train loop is still a config dict and must not be built
    PoisonRecordHook().before_run(SimpleNamespace(_train_loop=dict(type='X'),
                                                  work_dir=str(tmp_path)))
    assert os.listdir(tmp_path) == []


def test_expected_attack_configs():
    names = {osp.basename(p) for p in ATTACK_CONFIGS}
    for algo in ('simclr', 'byol'):
        for attack in ('sslbackdoor', 'ctrl'):
            assert f'{attack}_resnet18_{algo}_1xb512-coslr-500e_cifar10.py' in names
    for attack in ('sslbackdoor', 'ctrl'):
        assert f'{attack}_resnet18-w16_simclr_1xb256-coslr-8e_cifar10.py' in names
    readme = open(osp.join(REPO_ROOT, 'configs', 'attacks', 'README.md')).read()
    for name in names:
        assert f'`{name}`' in readme


@pytest.mark.parametrize('rel', ATTACK_CONFIGS)
def test_attack_config_builds_on_fake_data(rel, fake_root, htba_png, tmp_path, monkeypatch):
    # the configs name the HTBA trigger data/triggers/htba/trigger_10.png (or under
    # $BMAIU_TRIGGER_ROOT): run from a folder that has one
    monkeypatch.delenv('BMAIU_TRIGGER_ROOT', raising=False)
    os.makedirs(tmp_path / 'data' / 'triggers' / 'htba')
    with open(htba_png, 'rb') as src, \
            open(tmp_path / 'data' / 'triggers' / 'htba' / 'trigger_10.png', 'wb') as dst:
        dst.write(src.read())
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(osp.join(REPO_ROOT, rel))
    attack = osp.basename(rel).split('_')[0]
    assert cfg.evaluate_attack == attack
    assert cfg.custom_hooks == [dict(type='PoisonRecordHook')]
    assert cfg.val_cfg['type'] == 'BackdoorProbeLoop'
    # {attack}_{backbone}_{algo}_{schedule}.py poisons selfsup/{algo}_{backbone}_{schedule}.py
    backbone, algo, schedule = osp.basename(rel)[len(attack) + 1:].split('_', 2)
    base_name = f'{algo}_{backbone}_{schedule}'
    base = Config.fromfile(glob.glob(osp.join(REPO_ROOT, 'configs', 'selfsup', base_name))[0])
    assert cfg.model == base.model and cfg.train_cfg == base.train_cfg
    assert cfg.train_dataloader.dataset.dataset == base.train_dataloader.dataset
    assert cfg.train_dataloader.batch_size == base.train_dataloader.batch_size
    cfg.train_dataloader.dataset.dataset.data_root = fake_root
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(cfg.train_dataloader.dataset)
    assert isinstance(ds, PoisonedDataset) and isinstance(ds.dataset, BackdoorCIFAR10)
    assert ds.target_class == 0
    if attack == 'ctrl':
        assert isinstance(ds.trigger, CTRLTrigger) and ds.trigger.magnitude == 100
        assert len(ds.poisoned_indices) == N_ITEMS // 100  # 1 % of the dataset, the first ones
        assert ds.selection == 'first'
    else:
        assert isinstance(ds.trigger, PatchTrigger) and ds.trigger.size == 8
        assert ds.trigger.position == 'random' and ds.trigger.area == (0.25, 0.75)
        assert len(ds.poisoned_indices) == PER_CLASS // 2  # 50 % of the target class
    views = ds[int(ds.poisoned_indices[0])]['inputs']  # the SSL pipeline runs on it
    assert len(views) == 2 and views[0].shape == (3, 32, 32)
    # the evaluator learns the attack's trigger from evaluate_attack
    cfg = finalize_config(cfg)
    assert [t['name'] for t in cfg.val_cfg.triggers] == [attack]
    assert cfg.val_cfg.triggers[0]['target'] == 0
