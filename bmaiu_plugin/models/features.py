"""Encoder features in one convention: pixel-space images normalized, outputs pooled to (B, D)."""
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.errors import ConfigValueError

#: CIFAR-10 per-channel mean and std on the 0-255 scale (the one copy in the package).
CIFAR10_MEAN = (125.307, 122.961, 113.8575)
CIFAR10_STD = (51.5865, 50.847, 51.255)


def pool_features(out) -> torch.Tensor:
    """Turn a backbone output (tensor or tuple of stage outputs) into ``(B, D)`` features."""
    if isinstance(out, (tuple, list)):
        out = out[-1]
    if out.dim() == 4:
        out = F.adaptive_avg_pool2d(out, 1)
    return out.flatten(1)


class PixelNormalizer(nn.Module):
    """Pixel-space ``[0, 255]`` images to the encoder's normalized input.

    Args:
        mean (Sequence[float]): Per-channel mean on the 0-255 scale.
        std (Sequence[float]): Per-channel std on the 0-255 scale.
        bgr_to_rgb (bool): Reverse the channel order first.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], bgr_to_rgb: bool = False):
        super().__init__()
        self.register_buffer('mean', torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = imgs.float()
        if self.bgr_to_rgb:
            x = x.flip(1)
        return (x - self.mean) / self.std


def mean_pairwise_cosine(feats: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity over the ``B(B-1)`` ordered pairs ``i != j`` of ``(B, D)`` features.

    Computed as ``(||sum_i f_i/|f_i| ||^2 - B) / (B(B-1))``: O(B D), no ``B x B`` matrix.
    """
    b = feats.shape[0]
    if b < 2:
        raise ConfigValueError('the mean pairwise cosine needs at least 2 samples')
    fn = F.normalize(feats.flatten(1).float(), dim=1)
    s = fn.sum(0)
    return (s.dot(s) - (fn * fn).sum()) / (b * (b - 1))


def grouped_pairwise_cosine(feats: torch.Tensor, group: torch.Tensor,
                            n_groups: int) -> torch.Tensor:
    """:func:`mean_pairwise_cosine` within each group of rows at once, ``(n_groups,)``.

    ``group`` ``(B,)`` holds each row's group in ``[0, n_groups)``; a group of fewer than two
    rows gives NaN.  One ``index_add`` per term, no loop over the groups.
    """
    fn = F.normalize(feats.flatten(1).float(), dim=1)
    sums = torch.zeros(n_groups, fn.shape[1], device=fn.device).index_add_(0, group, fn)
    self_dot = torch.zeros(n_groups, device=fn.device).index_add_(0, group, (fn * fn).sum(1))
    n = torch.bincount(group, minlength=n_groups).float()
    return ((sums * sums).sum(1) - self_dot) / (n * (n - 1))
