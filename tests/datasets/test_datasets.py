"""BackdoorCIFAR10 (offline, md5, error messages) and RatioSubset."""
import os.path as osp

import numpy as np
import pytest

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.datasets import BackdoorCIFAR10, RatioSubset, default_data_root
from bmaiu_plugin.registry import DATASETS
from bmaiu_plugin.utils.errors import ConfigValueError, DatasetNotFoundError

# sizes of the conftest ``fake_cifar`` folder (5 train batches of 8, a test batch of 100)
FAKE_PER_TRAIN_BATCH = 8
FAKE_TEST = 100
CIFAR_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse',
                 'ship', 'truck')


def _hwc(row):
    return row.reshape(3, 32, 32).transpose(1, 2, 0)


def test_fake_test_split_loads(fake_cifar):
    root, written = fake_cifar
    assert len(written['test_batch'][1]) == FAKE_TEST
    assert len(written['data_batch_1'][1]) == FAKE_PER_TRAIN_BATCH
    ds = BackdoorCIFAR10(data_root=root, split='test', check_md5=False)
    data, labels = written['test_batch']
    assert len(ds) == FAKE_TEST
    assert ds.metainfo['classes'] == tuple(CIFAR_CLASSES)
    for i in (0, 1, 57, FAKE_TEST - 1):
        info = ds.get_data_info(i)
        assert info['gt_label'] == labels[i]
        assert info['img'].shape == (32, 32, 3) and info['img'].dtype == np.uint8
        assert np.array_equal(info['img'], _hwc(data[i]))
    assert [ds.get_data_info(i)['gt_label'] for i in range(len(ds))] == labels
    item = ds[3]  # empty pipeline: the info dict itself
    assert item['gt_label'] == labels[3] and np.array_equal(item['img'], _hwc(data[3]))


def test_fake_train_split_concatenates_batches(fake_cifar):
    root, written = fake_cifar
    ds = BackdoorCIFAR10(data_root=root, split='train', check_md5=False)
    assert len(ds) == 5 * FAKE_PER_TRAIN_BATCH
    labels = sum((written[f'data_batch_{i}'][1] for i in range(1, 6)), [])
    assert [ds.get_data_info(i)['gt_label'] for i in range(len(ds))] == labels
    first_of_batch3 = written['data_batch_3'][0][0]
    assert np.array_equal(ds.get_data_info(2 * FAKE_PER_TRAIN_BATCH)['img'],
                          _hwc(first_of_batch3))


def test_default_md5_check_rejects_fake_data(fake_cifar):
    root, _ = fake_cifar
    with pytest.raises(DatasetNotFoundError) as e:
        BackdoorCIFAR10(data_root=root, split='test')
    msg = str(e.value)
    assert 'md5' in msg and 'check_md5=False' in msg
    assert osp.abspath(osp.join(root, 'cifar-10-batches-py')) in msg


@pytest.mark.parametrize('check_md5', [True, False])
def test_missing_folder_message(tmp_path, check_md5):
    root = tmp_path / 'no_cifar_here'
    with pytest.raises(DatasetNotFoundError) as e:
        BackdoorCIFAR10(data_root=str(root), split='test', check_md5=check_md5)
    msg = str(e.value)
    assert str(root.absolute()) in msg
    assert osp.join(str(root.absolute()), 'cifar-10-batches-py') in msg
    assert 'BMAIU_DATA_ROOT' in msg and 'prepare_cifar10.py' in msg and 'cifar.html' in msg
    assert isinstance(e.value, FileNotFoundError)


def test_missing_folder_relative_root_reported_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as e:
        BackdoorCIFAR10(data_root='rel/cifar', split='test', check_md5=False)
    assert osp.join(str(tmp_path), 'rel', 'cifar', 'cifar-10-batches-py') in str(e.value)


def test_one_missing_batch_file_is_not_found(fake_cifar):
    root, _ = fake_cifar
    import os
    os.remove(osp.join(root, 'cifar-10-batches-py', 'data_batch_4'))
    with pytest.raises(DatasetNotFoundError, match='batch files missing'):
        BackdoorCIFAR10(data_root=root, split='test', check_md5=False)


def test_env_var_is_honoured(fake_cifar, monkeypatch, tmp_path):
    root, written = fake_cifar
    monkeypatch.setenv('BMAIU_DATA_ROOT', root)
    assert default_data_root() == root
    ds = BackdoorCIFAR10(data_root=None, split='test', check_md5=False)
    assert len(ds) == FAKE_TEST
    assert ds.get_data_info(0)['gt_label'] == written['test_batch'][1][0]
    monkeypatch.setenv('BMAIU_DATA_ROOT', str(tmp_path / 'elsewhere'))
    with pytest.raises(DatasetNotFoundError, match='elsewhere'):
        BackdoorCIFAR10(split='test', check_md5=False)
    monkeypatch.delenv('BMAIU_DATA_ROOT')
    assert default_data_root() == 'data/cifar10'


def test_indices_shrinks(fake_cifar):
    root, written = fake_cifar
    ds = BackdoorCIFAR10(data_root=root, split='test', check_md5=False, indices=7)
    assert len(ds) == 7
    assert [ds.get_data_info(i)['gt_label'] for i in range(7)] == written['test_batch'][1][:7]


@pytest.mark.parametrize('indices', [0, -3, 'abc', [], [1, 'x'], True, 2.5])
def test_bad_indices_raise_one_clear_error(fake_cifar, fake_test_set, indices):
    root, _ = fake_cifar
    with pytest.raises(ConfigValueError, match=r'dataset indices must be .*got'):
        BackdoorCIFAR10(data_root=root, split='test', check_md5=False, indices=indices)
    with pytest.raises(ConfigValueError, match=r'dataset indices must be .*got'):
        RatioSubset(fake_test_set[0], ratio=0.5, indices=indices)


def test_good_indices_are_kept(fake_cifar):
    root, written = fake_cifar
    ds = BackdoorCIFAR10(data_root=root, split='test', check_md5=False,
                         indices=[4, np.int64(2)])
    labels = written['test_batch'][1]
    assert [ds.get_data_info(i)['gt_label'] for i in range(2)] == [labels[4], labels[2]]


def test_built_from_registry(fake_cifar):
    root, _ = fake_cifar
    ds = DATASETS.build(dict(type='BackdoorCIFAR10', data_root=root, split='test',
                             check_md5=False, pipeline=[dict(type='PackInputs')]))
    out = ds[0]
    assert tuple(out['inputs'].shape) == (3, 32, 32)


# ----------------------------------------------------------------------------------- RatioSubset
@pytest.fixture
def fake_test_set(fake_cifar):
    root, written = fake_cifar
    return BackdoorCIFAR10(data_root=root, split='test', check_md5=False), written


@pytest.mark.parametrize('ratio', [0, 0., -0.1, 1.5, '0.1', None])
def test_ratio_subset_bad_ratio(fake_test_set, ratio):
    ds, _ = fake_test_set
    with pytest.raises(ConfigValueError, match='ratio'):
        RatioSubset(ds, ratio=ratio)


def test_ratio_subset_size_and_seed(fake_test_set):
    ds, written = fake_test_set
    sub = RatioSubset(ds, ratio=0.1, seed=0)
    assert len(sub) == 10
    assert len(set(sub.indices.tolist())) == 10
    assert list(sub.indices) == sorted(sub.indices)
    assert all(0 <= i < FAKE_TEST for i in sub.indices)
    same = RatioSubset(ds, ratio=0.1, seed=0)
    other = RatioSubset(ds, ratio=0.1, seed=1)
    assert np.array_equal(sub.indices, same.indices)
    assert not np.array_equal(sub.indices, other.indices)
    # len / getitem / get_data_info / metainfo
    data, labels = written['test_batch']
    for j, i in enumerate(sub.indices):
        assert sub.get_data_info(j)['gt_label'] == labels[i]
        assert np.array_equal(sub[j]['img'], _hwc(data[i]))
    assert sub.metainfo == ds.metainfo
    sub.metainfo['classes'] = ('x',)  # a copy: the wrapped dataset's metainfo is untouched
    assert ds.metainfo['classes'] == tuple(CIFAR_CLASSES)
    sub.full_init()


def test_ratio_subset_extremes(fake_test_set):
    ds, _ = fake_test_set
    assert len(RatioSubset(ds, ratio=1.0)) == FAKE_TEST
    assert len(RatioSubset(ds, ratio=1)) == FAKE_TEST
    assert len(RatioSubset(ds, ratio=0.001)) == 1  # at least one item
    assert len(RatioSubset(ds, ratio=0.05)) == 5
    assert len(RatioSubset(ds, ratio=0.126)) == 13  # rounded


def test_ratio_subset_indices_shrink_the_selection(fake_test_set):
    ds, _ = fake_test_set
    full = RatioSubset(ds, ratio=0.2, seed=4)
    first = RatioSubset(ds, ratio=0.2, seed=4, indices=3)
    assert len(first) == 3 and np.array_equal(first.indices, full.indices[:3])
    picked = RatioSubset(ds, ratio=0.2, seed=4, indices=[0, 5, 19])
    assert np.array_equal(picked.indices, full.indices[[0, 5, 19]])
    assert picked.get_data_info(1)['gt_label'] == ds.get_data_info(int(full.indices[5]))[
        'gt_label']


def test_ratio_subset_from_config(fake_cifar):
    root, _ = fake_cifar
    sub = DATASETS.build(dict(type='RatioSubset', ratio=0.2, seed=3,
                              dataset=dict(type='BackdoorCIFAR10', data_root=root, split='test',
                                           check_md5=False)))
    assert isinstance(sub, RatioSubset) and len(sub) == 20
    assert np.array_equal(sub.indices,
                          np.sort(np.random.default_rng(3).permutation(FAKE_TEST)[:20]))


# ------------------------------------------------------------------------------------- real data
@pytest.mark.integration
def test_real_cifar10_sizes_and_label_counts(cifar_root):
    train = BackdoorCIFAR10(data_root=cifar_root, split='train', check_md5=False)
    assert len(train) == 50000
    counts = np.bincount(train.get_gt_labels(), minlength=10)
    assert counts.tolist() == [5000] * 10
    img = train.get_data_info(0)['img']
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    del train
    test = BackdoorCIFAR10(data_root=cifar_root, split='test', check_md5=False)
    assert len(test) == 10000
    counts = np.bincount(test.get_gt_labels(), minlength=10)
    assert test.get_data_info(9999)['gt_label'] == int(test.get_gt_labels()[-1])
    assert counts.tolist() == [1000] * 10
    assert test.metainfo['classes'][0] == 'airplane'
