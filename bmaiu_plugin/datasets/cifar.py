"""CIFAR-10 from a local folder, never downloaded."""
import os
import os.path as osp
from typing import Optional

import numpy as np
from mmpretrain.datasets import CIFAR10

from ..registry import DATASETS
from ..utils.errors import DatasetFileError, DatasetNotFoundError
from ..utils.safe_load import safe_pickle_load
from .subset import CheckedIndices, check_indices

#: Environment variable naming the folder that holds ``cifar-10-batches-py/``.
DATA_ROOT_ENV = 'BMAIU_DATA_ROOT'
#: Where the official python version of CIFAR-10 is published.
CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar.html'


def read_cifar_batch(path: str, num_classes: int = 10):
    """One CIFAR batch file as ``(images (N, 32, 32, 3) uint8, labels (N,) int64)``.

    Read with the restricted unpickler (:func:`~bmaiu_plugin.utils.safe_load.safe_pickle_load`)
    and checked against what a batch holds: a dict with ``data`` (a uint8 ``(N, 3072)`` array) and
    ``labels`` (or CIFAR-100's ``fine_labels``: N integers in ``[0, num_classes)``).

    Raises:
        UnsafeFileError: The file names code to run.
        DatasetFileError: The file is truncated, corrupt or holds something else.
    """
    entry = safe_pickle_load(path, encoding='latin1', kind='CIFAR batch file',
                             error_cls=DatasetFileError)

    def fail(what):
        raise DatasetFileError(f'{path} is not a CIFAR batch file ({what}); replace it with a '
                               'good copy of the dataset')

    if not isinstance(entry, dict):
        fail('not a dict')
    data = entry.get('data')
    labels = entry.get('labels', entry.get('fine_labels'))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or \
            data.shape[1] != 3072:
        fail("no uint8 (N, 3072) 'data' array")
    try:
        labels = np.asarray(labels) if isinstance(labels, (list, np.ndarray)) else None
    except (ValueError, TypeError):  # ragged or mixed lists
        labels = None
    if labels is None or labels.shape != (len(data),) or labels.dtype.kind not in 'iu' or \
            (labels.size and not 0 <= labels.min() <= labels.max() < num_classes):
        fail(f"'labels' are not {len(data)} class indices in [0, {num_classes})")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.int64)


def default_data_root() -> str:
    """``$BMAIU_DATA_ROOT`` or ``data/cifar10``."""
    return os.environ.get(DATA_ROOT_ENV) or 'data/cifar10'


@DATASETS.register_module()
class BackdoorCIFAR10(CheckedIndices, CIFAR10):
    """mmpretrain's ``CIFAR10`` read from a local root, with an optional md5 check.

    Args:
        data_root (str, optional): Folder holding ``cifar-10-batches-py/``. Defaults to
            ``$BMAIU_DATA_ROOT`` or ``data/cifar10``.
        check_md5 (bool): Check the official md5 sums of the batch files. Switch it off for the
            a re-encoded copy (e.g. ``prepare_cifar10.py --jpeg-npz``), whose sums differ.
        **kwargs: Passed to mmpretrain's ``CIFAR10`` (``split``, ``pipeline``, ``indices``, ...).
    """

    def __init__(self, data_root: Optional[str] = None, check_md5: bool = True, **kwargs):
        check_indices(kwargs.get('indices'))
        self.check_md5 = check_md5
        kwargs['download'] = False
        super().__init__(data_root=data_root or default_data_root(), **kwargs)

    def _check_integrity(self) -> bool:
        if self.check_md5:
            return super()._check_integrity()
        root = osp.join(self.data_prefix['root'], self.base_folder)
        return all(osp.isfile(osp.join(root, f)) for f, _ in self.train_list + self.test_list)

    def _load_meta(self):
        path = osp.join(self.data_prefix['root'], self.base_folder, self.meta['filename'])
        meta = safe_pickle_load(path, encoding='latin1', kind='CIFAR meta file',
                                error_cls=DatasetFileError)
        names = meta.get(self.meta['key']) if isinstance(meta, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DatasetFileError(f"{path} is not a CIFAR meta file (no '{self.meta['key']}' "
                                   'list of names); replace it with a good copy of the dataset')
        self._metainfo.setdefault('classes', names)

    def load_data_list(self):
        if not self._check_integrity():
            folder = osp.abspath(osp.join(self.data_prefix['root'], self.base_folder))
            what = ('files missing or md5 mismatch; set check_md5=False for a re-encoded '
                    'copy') if self.check_md5 else 'batch files missing'
            raise DatasetNotFoundError(
                f'CIFAR-10 not found in {folder} ({what}). Get the official python version '
                f'({CIFAR10_URL}): python tools/dataset_converters/prepare_cifar10.py '
                '--download data/cifar10 (or --archive cifar-10-python.tar.gz after '
                f'downloading it), or point {DATA_ROOT_ENV} (or the dataset\'s data_root) at a '
                'folder holding cifar-10-batches-py/')
        files = self.train_list if self.split == 'train' else self.test_list
        root = osp.join(self.data_prefix['root'], self.base_folder)
        parts = [read_cifar_batch(osp.join(root, name)) for name, _ in files]
        if self.CLASSES is None:
            self._load_meta()
        return [{'img': img, 'gt_label': int(label)}
                for imgs, labels in parts for img, label in zip(imgs, labels)]
