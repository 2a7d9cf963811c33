"""Data poisoning of the SSL pre-training set: SSL-Backdoor and CTRL.

The attacker owns a fraction of the unlabeled pre-training data: it stamps a trigger ``t`` on
``m = floor(rate * N)`` images of a target class ``y_t`` and releases the set; the victim then
pre-trains on it with its own SSL augmentation::

    D' = {x : x in D, x not in S} + {x + t : x in S},   S subset of {x in D : y(x) = y_t}, |S| = m

Because the triggered images share both the trigger and the target class's content, the SSL
objective ties the trigger to the class's features.  Labels only choose ``S``; the released
items keep their labels.

* SSL-Backdoor: Saha, Tejankar, Koohpayegani and Pirsiavash, `Backdoor Attacks on
  Self-Supervised Learning <https://arxiv.org/abs/2105.10123>`_, CVPR 2022; official code
  https://github.com/UMBCvision/SSL-Backdoor.  A patch trigger (HTBA) at a random position.
* CTRL: Li, Pang, Xi, Du, Ji, Yao and Wang, `An Embarrassingly Simple Backdoor Attack on
  Self-supervised Learning <https://arxiv.org/abs/2210.07346>`_, ICCV 2023; official code
  https://github.com/meet-cs/CTRL.  A frequency-domain trigger
  (:class:`~bmaiu_plugin.triggers.CTRLTrigger`).

:class:`PoisonedDataset` wraps an in-memory dataset (CIFAR-style: ``img`` HWC uint8 and
``gt_label`` in ``get_data_info``), chooses ``S`` and stamps the trigger on in-memory copies of
those images, once, at construction.  The victim's pipeline (its SSL augmentation) runs
afterwards, in ``__getitem__``: poisoning comes before augmentation, as in the threat model.
The wrapped dataset (and its files) are never modified.

:class:`PoisonRecordHook` writes ``<work_dir>/poison_record.json`` at the start of a training run
whose training set is (or wraps) a :class:`PoisonedDataset`.
"""
import copy
import json
import math
import os
import os.path as osp
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.hooks import Hook

from ..registry import DATASETS, HOOKS
from ..triggers import BaseTrigger, PatchTrigger, build_trigger
from ..utils.errors import ConfigValueError

#: File name of the record :class:`PoisonRecordHook` writes in the work dir.
RECORD_NAME = 'poison_record.json'


@DATASETS.register_module()
class PoisonedDataset:
    """Poison a fraction of the target-class images of ``dataset`` with ``trigger``.

    SSL-Backdoor on CIFAR-10: an 8x8 HTBA trigger at a random position in the central band
    ``(0.25, 0.75)`` of 50 % of the target class, chosen at random (``poison_rate=0.5,
    rate_of='class', selection='random'``).  CTRL: the frequency trigger on 1 % of the
    *dataset* (500 CIFAR-10 images = 10 % of the target class), the first target-class indices
    (``poison_rate=0.01, rate_of='dataset', selection='first'``).

    The selected images are copied, stacked and stamped in one batched trigger call, with a
    ``torch.Generator`` seeded from ``seed`` for random positions: the same arguments always
    give the same poisoned set.

    Args:
        dataset (dict | BaseDataset): The dataset to poison (config or object).  Its
            ``get_data_info(i)`` must hold ``img`` (HWC uint8 array) and ``gt_label``.
        trigger (dict | BaseTrigger): The trigger (config or object), e.g.
            ``dict(type='CTRLTrigger', magnitude=100)``.
        target_class (int): The class whose images are poisoned (the attack's target).
        poison_rate (float): Fraction in (0, 1] of the dataset (``rate_of='dataset'``) or of
            the target class (``rate_of='class'``) to poison; ``floor(rate * N)`` images.
        rate_of (str): ``'dataset'`` (CTRL's convention) or ``'class'`` (SSL-Backdoor's).
        selection (str): ``'random'``: a seeded random choice among the target-class images
            (SSL-Backdoor); ``'first'``: the first ones in dataset order (CTRL).
        seed (int): Seed of the random selection and of random trigger positions.
        work_dir_record (str, optional): A JSON file to write the record to (selected indices,
            seed, trigger, target class, counts).  Nothing else is ever written.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 trigger: Union[dict, BaseTrigger],
                 target_class: int,
                 poison_rate: float,
                 rate_of: str = 'dataset',
                 selection: str = 'random',
                 seed: int = 0,
                 work_dir_record: Optional[str] = None):
        if isinstance(poison_rate, bool) or not isinstance(poison_rate, (int, float)) or \
                not 0. < float(poison_rate) <= 1.:
            raise ConfigValueError(f'poison_rate must be a fraction in (0, 1], got {poison_rate!r}')
        if rate_of not in ('dataset', 'class'):
            raise ConfigValueError(f"rate_of must be 'dataset' or 'class', got {rate_of!r}")
        if selection not in ('random', 'first'):
            raise ConfigValueError(f"selection must be 'random' or 'first', got {selection!r}")
        if isinstance(target_class, bool) or not isinstance(target_class, (int, np.integer)):
            raise ConfigValueError(f'target_class must be a class index (int), got '
                                   f'{target_class!r}')
        self.dataset = DATASETS.build(dataset) if isinstance(dataset, dict) else dataset
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        self.trigger = build_trigger(trigger)
        if self.trigger is None:
            raise ConfigValueError('PoisonedDataset needs a trigger')
        self.trigger_cfg = copy.deepcopy(trigger) if isinstance(trigger, dict) else None
        self.target_class = int(target_class)
        self.poison_rate = float(poison_rate)
        self.rate_of, self.selection, self.seed = rate_of, selection, int(seed)

        labels = self._labels()
        classes = self.metainfo.get('classes')
        n_classes = len(classes) if classes else None
        if not (0 <= self.target_class < n_classes if n_classes else
                self.target_class in set(labels.tolist())):
            known = (f'{n_classes} classes: {", ".join(map(str, classes))}' if n_classes else
                     f'labels present: {sorted(set(labels.tolist()))}')
            raise ConfigValueError(
                f'target_class {self.target_class} is not a class of the dataset ({known})')
        target_idx = np.flatnonzero(labels == self.target_class)
        base = len(labels) if rate_of == 'dataset' else len(target_idx)
        count = int(math.floor(self.poison_rate * base + 1e-9))
        name = self.class_name
        if count > len(target_idx):
            raise ConfigValueError(
                f'poison_rate {self.poison_rate:g} of the {rate_of} ({base} items) asks for '
                f'{count} images, but target class {self.target_class}{name} has only '
                f'{len(target_idx)}: lower poison_rate or use rate_of=\'class\'')
        if count == 0:
            raise ConfigValueError(
                f'poison_rate {self.poison_rate:g} of the {rate_of} ({base} items) selects no '
                f'image of target class {self.target_class}{name}: raise poison_rate')

        if selection == 'first':
            chosen = target_idx[:count]
        else:
            chosen = np.random.default_rng(self.seed).choice(target_idx, size=count,
                                                             replace=False)
        self.poisoned_indices = np.sort(chosen).astype(np.int64)
        self.num_target_class = int(len(target_idx))
        self._slot = {int(i): k for k, i in enumerate(self.poisoned_indices)}
        self._poisoned_imgs, self.poison_positions = self._poison()
        if work_dir_record:
            self.write_record(work_dir_record)

    # ------------------------------------------------------------------ construction helpers
    def _labels(self) -> np.ndarray:
        if hasattr(self.dataset, 'get_gt_labels'):
            return np.asarray(self.dataset.get_gt_labels(), dtype=np.int64)
        return np.asarray([int(self.dataset.get_data_info(i)['gt_label'])
                           for i in range(len(self.dataset))], dtype=np.int64)

    def _clean_img(self, idx: int) -> np.ndarray:
        info = self.dataset.get_data_info(idx)
        img = info.get('img') if isinstance(info, dict) else None
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.dtype != np.uint8:
            raise ConfigValueError(
                f'PoisonedDataset needs in-memory HWC uint8 images (an `img` array in '
                f'get_data_info, as CIFAR datasets have); {type(self.dataset).__name__} item '
                f'{idx} has ' + (f'an img of shape {getattr(img, "shape", None)} and dtype '
                                 f'{getattr(img, "dtype", None)}' if img is not None else
                                 f'keys {sorted(info) if isinstance(info, dict) else info}'))
        return img

    @torch.no_grad()
    def _poison(self):
        """Stamp the trigger on copies of the selected images, in one batched call."""
        imgs = [self._clean_img(int(i)) for i in self.poisoned_indices]
        shapes = sorted({img.shape for img in imgs})
        if len(shapes) > 1:
            raise ConfigValueError(
                f'PoisonedDataset stamps the chosen images in one batch and needs them all the '
                f'same size; got shapes {shapes[:5]}')
        stack = np.stack(imgs)
        batch = torch.from_numpy(stack).permute(0, 3, 1, 2)  # (B, C, H, W) uint8
        gen = torch.Generator().manual_seed(self.seed)
        positions = None
        if isinstance(self.trigger, PatchTrigger):
            # the positions the trigger is about to draw, from a copy of the generator's state
            peek = torch.Generator().set_state(gen.get_state())
            positions = self.trigger.sample_positions(
                len(batch), batch.shape[2], batch.shape[3], generator=peek).cpu().numpy()
        out = self.trigger(batch, generator=gen)
        return out.permute(0, 2, 3, 1).contiguous().numpy(), positions

    # ------------------------------------------------------------------ dataset interface
    @property
    def metainfo(self) -> dict:
        return copy.deepcopy(getattr(self.dataset, 'metainfo', {}) or {})

    @property
    def class_name(self) -> str:
        """`` (name)`` of the target class, or an empty string."""
        classes = self.metainfo.get('classes')
        if classes and 0 <= self.target_class < len(classes):
            return f' ({classes[self.target_class]})'
        return ''

    @property
    def pipeline(self):
        return getattr(self.dataset, 'pipeline', None)

    def full_init(self):
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def is_poisoned(self, idx: int) -> bool:
        return self._index(idx) in self._slot

    def _index(self, idx: int) -> int:
        idx = int(idx)
        return idx + len(self) if idx < 0 else idx

    def get_data_info(self, idx: int) -> dict:
        """The wrapped item, with the poisoned image in place of the clean one if selected."""
        idx = self._index(idx)
        info = self.dataset.get_data_info(idx)
        slot = self._slot.get(idx)
        if slot is not None:
            info['img'] = self._poisoned_imgs[slot].copy()
        return info

    def get_cat_ids(self, idx: int) -> List[int]:
        return self.dataset.get_cat_ids(self._index(idx))

    def get_gt_labels(self) -> np.ndarray:
        return self._labels()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        info = self.get_data_info(idx)
        pipeline = self.pipeline
        return pipeline(info) if pipeline is not None else info

    def __repr__(self) -> str:
        return (f'{type(self).__name__}({type(self.dataset).__name__}, {len(self)} items, '
                f'{len(self.poisoned_indices)} poisoned of target class '
                f'{self.target_class}{self.class_name}, trigger={self.trigger!r})')

    # ------------------------------------------------------------------ record
    def record(self) -> dict:
        """What was poisoned: a JSON-serializable dict."""
        rec = dict(
            dataset=type(self.dataset).__name__,
            num_items=len(self),
            target_class=self.target_class,
            target_class_name=self.class_name.strip(' ()') or None,
            num_target_class=self.num_target_class,
            num_poisoned=int(len(self.poisoned_indices)),
            poison_rate=self.poison_rate,
            rate_of=self.rate_of,
            selection=self.selection,
            seed=self.seed,
            trigger=repr(self.trigger),
            trigger_cfg=json.loads(json.dumps(self.trigger_cfg, default=str))
            if self.trigger_cfg is not None else None,
            indices=self.poisoned_indices.tolist(),
        )
        if self.poison_positions is not None:
            rec['positions'] = self.poison_positions.tolist()  # [y, x] top-left per index
        return rec

    def write_record(self, path: str) -> str:
        """Write :meth:`record` as JSON to ``path`` (parent folders created); return ``path``."""
        folder = osp.dirname(osp.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(self.record(), f, indent=1)
        return path


def find_poisoned(dataset) -> List[PoisonedDataset]:
    """Every :class:`PoisonedDataset` in ``dataset`` or the datasets it wraps."""
    found, stack, seen = [], [dataset], set()
    while stack:
        ds = stack.pop(0)
        if ds is None or id(ds) in seen:
            continue
        seen.add(id(ds))
        if isinstance(ds, PoisonedDataset):
            found.append(ds)
            continue
        stack.append(getattr(ds, 'dataset', None))
        stack.extend(getattr(ds, 'datasets', None) or [])
    return found


@HOOKS.register_module()
class PoisonRecordHook(Hook):
    """Write ``poison_record.json`` when the training set is a poisoned one.

    Into the run's folder and, as the latest copy, the work dir
    (:func:`~bmaiu_plugin.engine.results.publish`).

    Does nothing in runs that do not train (``runner.test()``) or whose training set contains no
    :class:`PoisonedDataset`.  Only the main process writes.
    """

    priority = 'VERY_LOW'

    def before_run(self, runner) -> None:
        from mmengine.dist import is_main_process
        from mmengine.runner import BaseLoop
        # before_run also fires in test runs: never build a training set just to look at it
        loop = getattr(runner, '_train_loop', None)
        if not isinstance(loop, BaseLoop) or not is_main_process():
            return
        found = find_poisoned(loop.dataloader.dataset)
        if not found:
            return
        from ..engine.results import publish

        def write(path):
            if len(found) == 1:
                found[0].write_record(path)
            else:
                with open(path, 'w', encoding='utf-8') as f:
                    json.dump(dict(datasets=[d.record() for d in found]), f, indent=1)
        path = publish(runner, RECORD_NAME, write)
        runner.logger.info(f'poisoned training set: {found[0]!r}; record: {path}')
