"""Small helpers on mmpretrain data batches and encoders, shared by every algorithm.

* :func:`batch_images` / :func:`batch_labels_and_idx`: the pieces of a data batch;
* :func:`collect_images`: the first ``n`` images (and labels) a dataloader yields;
* :func:`unwrap_model`: the model inside a runner or a DDP wrapper;
* :func:`eval_mode`: a module in ``eval()`` for a ``with`` block, its mode restored after;
* :func:`encode_batched`: pooled features of many pixel-space images, batch by batch.
"""
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import is_model_wrapper

from .device import module_device


def batch_images(data_batch: dict) -> torch.Tensor:
    """The ``(B, C, H, W)`` pixel-space images of an mmpretrain data batch."""
    inputs = data_batch['inputs']
    if isinstance(inputs, (list, tuple)):
        inputs = torch.stack(list(inputs))
    return inputs


def batch_labels_and_idx(data_batch: dict) -> Tuple[List[int], List[int]]:
    """The labels and ``sample_idx`` of a data batch's samples (``-1`` where absent)."""
    samples = data_batch['data_samples']
    labels = [int(s.gt_label.item()) if hasattr(s, 'gt_label') else int(s['gt_label'])
              for s in samples]
    idx = [int(s.metainfo.get('sample_idx', -1)) if hasattr(s, 'metainfo') else
           int(s.get('sample_idx', -1)) for s in samples]
    return labels, idx


def collect_images(dataloader, n: Optional[int] = None,
                   labels: bool = False):
    """The first ``n`` images (all if ``None``) a dataloader yields, on the CPU.

    Returns:
        Tensor | tuple[Tensor, Tensor]: ``(N, C, H, W)`` images, and ``(N,)`` labels when
        ``labels`` is true.
    """
    imgs, ys, count = [], [], 0
    for batch in dataloader:
        imgs.append(batch_images(batch).cpu())
        if labels:
            ys.append(torch.tensor(batch_labels_and_idx(batch)[0]))
        count += len(imgs[-1])
        if n is not None and count >= n:
            break
    if not imgs:
        from .errors import ConfigValueError
        raise ConfigValueError('the dataloader yielded no images')
    x = torch.cat(imgs)[:n]
    return (x, torch.cat(ys)[:n]) if labels else x


def unwrap_model(runner_or_model) -> nn.Module:
    """The model of a runner (or the model itself), outside any DDP-style wrapper."""
    model = getattr(runner_or_model, 'model', runner_or_model)
    return model.module if is_model_wrapper(model) else model


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in ``eval()`` inside the block; its training mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@torch.no_grad()
def encode_batched(encoder: nn.Module, normalizer: nn.Module, imgs: torch.Tensor,
                   batch_size: int = 512, device: Optional[torch.device] = None,
                   to_cpu: bool = True) -> torch.Tensor:
    """Pooled features ``(N, D)`` of pixel-space images, ``batch_size`` at a time.

    Args:
        encoder (nn.Module): The encoder (used as it is: put it in eval mode first if needed).
        normalizer (nn.Module): Pixel space ``[0, 255]`` to the encoder's input.
        imgs (Tensor): ``(N, C, H, W)`` images on any device.
        batch_size (int): Images per forward pass.
        device (torch.device, optional): Where to run; the encoder's device by default.
        to_cpu (bool): Return the features on the CPU (else on ``device``).
    """
    from ..models.features import pool_features
    device = device or module_device(encoder)
    out = [pool_features(encoder(normalizer(imgs[i:i + batch_size].to(device))))
           for i in range(0, len(imgs), batch_size)]
    out = torch.cat(out) if out else torch.zeros(0)
    return out.cpu() if to_cpu else out
