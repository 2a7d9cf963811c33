"""Choosing reference images: the target an implanted backdoor maps triggered inputs to.

Modes (``reference=dict(mode=..., num=..., seed=...)`` in a model config):

* ``'class'``: ``num`` images of class ``class_index`` (needs labels; an attacker's choice).
* ``'random_class'``: a class drawn at random from the labels, then as ``'class'``.
* ``'kmeans'``: label-free: k-means (``num_clusters``) on the encoder's features of the data, one
  cluster drawn at random, its ``num`` images nearest the centroid.
* ``'files'``: the given image files, resized to the data's image size.

Selection is a pure function of the data, the seed and (for k-means) the frozen starting
encoder, so it is recomputed identically after a resume and needs no checkpoint space.
"""
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.errors import ConfigValueError
from ..utils.validate import check_choice, check_keys, check_number, open_image

MODES = ('class', 'random_class', 'kmeans', 'files')
#: The keys of a ``reference=dict(...)`` config (:func:`select_reference` arguments).
REFERENCE_KEYS = ('mode', 'num', 'seed', 'class_index', 'files', 'num_clusters')


def check_reference_cfg(cfg: dict, name: str = 'reference') -> dict:
    """Check a ``reference=dict(...)`` config before any data is read; return a copy."""
    if not isinstance(cfg, dict):
        raise ConfigValueError(f'{name} must be a dict of {", ".join(REFERENCE_KEYS)}')
    cfg = dict(cfg)
    check_keys(name, cfg, REFERENCE_KEYS, 'a reference key')
    mode = check_choice(f'{name}.mode', cfg.get('mode', 'random_class'), MODES)
    check_number(f'{name}.num', cfg.get('num', 10), 1, integer=True)
    if 'num_clusters' in cfg:
        check_number(f'{name}.num_clusters', cfg['num_clusters'], 2, integer=True)
    if mode == 'files' and not cfg.get('files'):
        raise ConfigValueError(f"{name}: mode 'files' needs a list of image files (files=[...])")
    return cfg


def _raw_item(dataset, i: int) -> Tuple[np.ndarray, int]:
    info = dataset.get_data_info(i)
    if 'img' not in info:
        # file-based datasets: run the pipeline once and take the packed tensor
        packed = dataset[i]
        img = packed['inputs'].permute(1, 2, 0).numpy()
        label = int(packed['data_samples'].gt_label.item()) if \
            'gt_label' in packed['data_samples'] else -1
        return img, label
    return info['img'], int(info.get('gt_label', -1))


def dataset_arrays(dataset, limit: Optional[int] = None,
                   indices: Optional[Sequence[int]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` uint8 images and ``(N,)`` labels (-1 if unlabeled) of a dataset.

    Args:
        dataset: An mmengine-style dataset.
        limit (int, optional): Only the first ``limit`` items.
        indices (Sequence[int], optional): Only these items, in this order.
    """
    if indices is None:
        indices = range(len(dataset) if limit is None else min(limit, len(dataset)))
    imgs, labels = zip(*(_raw_item(dataset, int(i)) for i in indices))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels)


def _load_files(files: Sequence[str], size: Tuple[int, int]) -> torch.Tensor:
    from PIL import Image
    out = []
    for f in files:
        img = open_image(f, 'reference image').resize((size[1], size[0]), Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(img)).permute(2, 0, 1))
    return torch.stack(out)


def select_reference(dataset, mode: str = 'random_class', num: int = 10, seed: int = 0,
                     class_index: Optional[int] = None, files: Optional[Sequence[str]] = None,
                     num_clusters: int = 10,
                     encode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                     arrays: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                     ) -> Tuple[torch.Tensor, Dict]:
    """Pick reference images from ``dataset``.

    Args:
        dataset: An mmengine-style dataset (``get_data_info``) of the fine-tuning data.
        mode (str): One of :data:`MODES`.
        num (int): How many reference images.
        seed (int): Seed of every random choice.
        class_index (int, optional): For ``'class'``.
        files (Sequence[str], optional): For ``'files'``.
        num_clusters (int): For ``'kmeans'``.
        encode (Callable, optional): For ``'kmeans'``: pixel images -> ``(N, D)`` features.
        arrays (tuple[Tensor, Tensor], optional): ``dataset_arrays(dataset)`` if the caller has
            already loaded them (not reloaded here).

    Returns:
        tuple[Tensor, dict]: ``(R, C, H, W)`` uint8 images and a description (mode, class or
        cluster, indices) for the logs and ``metrics.json``.
    """
    check_choice('reference mode', mode, MODES)
    check_number('reference num', num, 1, integer=True)
    rng = np.random.default_rng(seed)
    if mode == 'files':
        if not files:
            raise ConfigValueError("reference mode 'files' needs a list of image files")
        img0, _ = _raw_item(dataset, 0)
        return _load_files(files, img0.shape[:2]), dict(mode=mode, files=list(files))
    imgs, labels = arrays if arrays is not None else dataset_arrays(dataset)
    if mode in ('class', 'random_class'):
        if (labels < 0).all():
            raise ConfigValueError(f"reference mode '{mode}' needs labels; use 'kmeans' or "
                                   "'files' for unlabeled data")
        classes = sorted(set(labels.tolist()) - {-1})
        if mode == 'random_class':
            class_index = int(rng.choice(classes))
        elif class_index is None or int(class_index) not in classes:
            raise ConfigValueError(f'reference class_index {class_index} is not among the '
                                   f'data\'s classes {classes}')
        pool = torch.nonzero(labels == int(class_index)).flatten().numpy()
        pick = np.sort(rng.choice(pool, size=min(int(num), len(pool)), replace=False))
        return imgs[pick], dict(mode=mode, class_index=int(class_index), indices=pick.tolist())
    # k-means, label-free
    if encode is None:
        raise ConfigValueError("reference mode 'kmeans' needs an encoder")
    from sklearn.cluster import KMeans
    feats = torch.nn.functional.normalize(encode(imgs), dim=1).numpy()
    km = KMeans(n_clusters=int(num_clusters), n_init=10, random_state=int(seed)).fit(feats)
    cluster = int(rng.integers(num_clusters))
    members = np.nonzero(km.labels_ == cluster)[0]
    dist = np.linalg.norm(feats[members] - km.cluster_centers_[cluster], axis=1)
    pick = np.sort(members[np.argsort(dist)[:int(num)]])
    info = dict(mode=mode, cluster=cluster, cluster_size=int(len(members)), indices=pick.tolist())
    if (labels >= 0).any():  # for the logs only: which class the cluster mostly is
        info['majority_label'] = int(torch.mode(labels[torch.from_numpy(members)]).values)
    return imgs[pick], info
