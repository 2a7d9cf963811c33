"""A seeded fraction of any dataset (the defender's 1 % / 5 % / 10 % of the training set)."""
import copy
from typing import Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset

from ..registry import DATASETS
from ..utils.errors import ConfigValueError, clip
from ..utils.validate import check_number


def check_indices(indices, length: Optional[int] = None, name: str = 'dataset') -> None:
    """Raise one clear error unless ``indices`` is what mmengine's ``indices`` accepts.

    Args:
        indices (int | Sequence[int] | None): ``None`` (all items), a count of at least 1 (keep
            the first ``indices`` items) or a non-empty sequence of integer positions.
        length (int, optional): The dataset's length, once known: a count may not exceed it and
            a position must lie in ``[-length, length)``.
        name (str): The dataset, for the message.

    Raises:
        ConfigValueError: If ``indices`` is 0, negative, empty, not made of integers, or (with
            ``length``) asks for items the dataset does not have.
    """
    if indices is None:
        return
    if isinstance(indices, int) and not isinstance(indices, bool):
        if indices >= 1:
            if length is not None and indices > length:
                raise ConfigValueError(
                    f'{name} indices={indices} asks for more items than the dataset has '
                    f'({length}); give at most {length} or remove indices')
            return
    elif isinstance(indices, Sequence) and not isinstance(indices, str) and len(indices) and \
            all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in indices):
        bad = [int(i) for i in indices if length is not None and not -length <= i < length]
        if bad:
            raise ConfigValueError(
                f'{name} indices name items the dataset does not have ({clip(bad, 40)}; it '
                f'has {length}, positions 0 to {length - 1}); fix or remove them')
        return
    raise ConfigValueError(f'{name} indices must be a count of at least 1 or a non-empty list '
                           f'of integer positions, got {clip(indices)}')


class CheckedIndices:
    """Mixin of an mmengine dataset: ``indices`` are checked against the loaded data.

    mmengine keeps the first ``indices`` items without a word when there are fewer, and fails
    deep inside with an ``IndexError`` on a position past the end; with this mixin both are one
    :class:`ConfigValueError` naming the dataset's length.
    """

    @staticmethod
    def check_cfg(cfg: dict, config, path: str) -> None:
        """Pre-flight (:func:`~bmaiu_plugin.utils.validate.check_config`): the form of
        ``indices``; their range is checked once the data is loaded."""
        check_indices(cfg.get('indices'), name=path)

    def _get_unserialized_subset(self, indices):
        split = getattr(self, 'split', None)
        check_indices(indices, len(self.data_list),
                      f'{type(self).__name__}{f" {split} split" if split else ""}')
        return super()._get_unserialized_subset(indices)


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
        self.ratio = check_number('data ratio', ratio, 0, 1, inclusive=(False, True))
        check_indices(indices)
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        self.seed = int(seed)
        n = len(self.dataset)
        k = max(1, int(round(n * self.ratio)))
        self.indices = np.sort(np.random.default_rng(self.seed).permutation(n)[:k])
        if indices is not None:
            check_indices(indices, len(self.indices), f'RatioSubset (ratio {self.ratio})')
            self.indices = self.indices[:int(indices)] if isinstance(indices, int) else \
                self.indices[np.asarray(indices, dtype=int)]

    @staticmethod
    def check_cfg(cfg: dict, config, path: str) -> None:
        """Pre-flight: ``ratio`` and the form of ``indices``."""
        try:
            check_number('data ratio', cfg.get('ratio'), 0, 1, inclusive=(False, True))
        except ConfigValueError as e:
            raise ConfigValueError(f'{path}.ratio: {e}') from None
        check_indices(cfg.get('indices'), name=path)

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
