"""A seeded fraction of any dataset (the defender's 1 % / 5 % / 10 % of the training set)."""
import copy
from typing import Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset

from ..registry import DATASETS
from ..utils.errors import ConfigValueError


def check_indices(indices) -> None:
    """Raise one clear error unless ``indices`` is what mmengine's ``indices`` accepts.

    Args:
        indices (int | Sequence[int] | None): ``None`` (all items), a count of at least 1 (keep
            the first ``indices`` items) or a non-empty sequence of integer positions.

    Raises:
        ConfigValueError: If ``indices`` is 0, negative, empty, or not made of integers.
    """
    if indices is None:
        return
    if isinstance(indices, int) and not isinstance(indices, bool):
        if indices >= 1:
            return
    elif isinstance(indices, Sequence) and not isinstance(indices, str) and len(indices) and \
            all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in indices):
        return
    raise ConfigValueError(f'dataset indices must be a count of at least 1 or a non-empty list '
                           f'of integer positions, got {indices!r}')


@DATASETS.register_module()
class RatioSubset:
    """A seeded random ``ratio`` of ``dataset``'s items.

    Args:
        dataset (dict | BaseDataset): The dataset (config or object).
        ratio (float): Fraction in (0, 1] of the items to keep (at least one item).
        seed (int): Seed of the selection; the same seed selects the same items.
        indices (int | Sequence[int], optional): Keep only the first ``indices`` of the selected
            items (or those positions), as mmengine's own ``indices`` does: shrinks a config
            for a smoke run with ``train_dataloader.dataset.indices=N``.
    """

    def __init__(self, dataset: Union[dict, BaseDataset], ratio: float, seed: int = 0,
                 indices=None):
        if not isinstance(ratio, (int, float)) or not 0. < float(ratio) <= 1.:
            raise ConfigValueError(f'data ratio must be in (0, 1], got {ratio!r}')
        check_indices(indices)
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.ratio, self.seed = float(ratio), int(seed)
        n = len(self.dataset)
        k = max(1, int(round(n * self.ratio)))
        self.indices = np.sort(np.random.default_rng(self.seed).permutation(n)[:k])
        if indices is not None:
            self.indices = self.indices[:int(indices)] if isinstance(indices, int) else \
                self.indices[np.asarray(indices, dtype=int)]

    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(self.dataset.metainfo)

    def full_init(self):
        self.dataset.full_init()

    def get_data_info(self, idx: int) -> dict:
        return self.dataset.get_data_info(int(self.indices[idx]))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> dict:
        return self.dataset[int(self.indices[idx])]
