"""CIFAR-10 from a local folder, never downloaded."""
import os
import os.path as osp
from typing import Optional

from mmpretrain.datasets import CIFAR10

from ..registry import DATASETS
from ..utils.errors import DatasetNotFoundError
from .subset import check_indices

#: Environment variable naming the folder that holds ``cifar-10-batches-py/``.
DATA_ROOT_ENV = 'BMAIU_DATA_ROOT'


def default_data_root() -> str:
    """``$BMAIU_DATA_ROOT`` or ``data/cifar10``."""
    return os.environ.get(DATA_ROOT_ENV) or 'data/cifar10'


@DATASETS.register_module()
class BackdoorCIFAR10(CIFAR10):
    """mmpretrain's ``CIFAR10`` read from a local root, with an optional md5 check.

    Args:
        data_root (str, optional): Folder holding ``cifar-10-batches-py/``. Defaults to
            ``$BMAIU_DATA_ROOT`` or ``data/cifar10``.
        check_md5 (bool): Check the official md5 sums of the batch files. Switch it off for the
            offline JPEG-derived copy (``../shared/data/cifar10``), whose sums differ.
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

    def load_data_list(self):
        if not self._check_integrity():
            folder = osp.abspath(osp.join(self.data_prefix['root'], self.base_folder))
            what = ('files missing or md5 mismatch (set check_md5=False for the offline '
                    'JPEG-derived copy)') if self.check_md5 else 'batch files missing'
            raise DatasetNotFoundError(
                f'CIFAR-10 not found in {folder} ({what}). Point {DATA_ROOT_ENV} (or the '
                "dataset's data_root) at a folder holding cifar-10-batches-py/, or build one "
                'offline: python ../shared/data/cifar10/build_cifar10.py data/cifar10')
        return super().load_data_list()
