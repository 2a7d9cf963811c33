"""Warping trigger: a fixed, smooth, barely visible geometric warp of the whole image.

Nguyen & Tran, "WaNet - Imperceptible Warping-based Backdoor Attack", ICLR 2021; official code:
github.com/VinAIResearch/Warping-based_Backdoor_Attack-release (``train.py``).
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..registry import TRIGGERS
from ..utils.validate import check_number
from .base import BaseTrigger


def warp_grid(control: torch.Tensor, strength: float, h: int, w: int) -> torch.Tensor:
    """``clamp(identity + strength * up(control) / h, -1, 1)``: the ``(1, H, W, 2)`` sampling
    grid (``x, y`` in ``[-1, 1]``) of a ``(1, 2, k, k)`` control field upsampled bicubically."""
    field = F.interpolate(control, size=(h, w), mode='bicubic', align_corners=True)
    field = field.permute(0, 2, 3, 1)  # (1, H, W, 2)
    ys = torch.linspace(-1, 1, h, device=control.device, dtype=control.dtype)
    xs = torch.linspace(-1, 1, w, device=control.device, dtype=control.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    identity = torch.stack((gx, gy), dim=-1)[None]
    return (identity + strength * field / h).clamp(-1, 1)


@TRIGGERS.register_module()
class WarpTrigger(BaseTrigger):
    """Resample every image on a fixed smooth warp of the identity grid.

    WaNet's field: ``P`` uniform in ``[-1, 1]^(2 x k x k)``, normalized by its mean absolute
    value, upsampled bicubically to ``H x W``; the sampling grid is
    ``clamp(identity + strength * P_up / H, -1, 1)`` (normalized coordinates), applied with
    bilinear ``grid_sample`` to the whole batch at once.

    Args:
        k (int): Side of the control grid (WaNet: 4 on CIFAR-10). Defaults to 4.
        strength (float): WaNet's ``s``, the warp's strength (WaNet: 0.5). Defaults to 0.5.
        seed (int): Seed of the control grid.
    """

    def __init__(self, k: int = 4, strength: float = 0.5, seed: int = 0):
        super().__init__()
        self.k = check_number('warp k', k, 2, integer=True)
        self.strength = check_number('warp strength', strength, 0)
        g = torch.Generator().manual_seed(int(seed))
        ins = torch.rand(1, 2, self.k, self.k, generator=g) * 2 - 1
        self.register_buffer('control', ins / ins.abs().mean())

    def extra_repr(self) -> str:
        return f'k={self.k}, strength={self.strength}'

    def grid(self, h: int, w: int, like: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The ``(1, H, W, 2)`` sampling grid (``x, y`` in ``[-1, 1]``) for ``h x w`` images."""
        ctrl = self.control if like is None else self.control.to(like)
        return warp_grid(ctrl, self.strength, h, w)

    def stamp_float(self, imgs: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        b, _, h, w = imgs.shape
        grid = self.grid(h, w, imgs).expand(b, h, w, 2)
        return F.grid_sample(imgs, grid, mode='bilinear', padding_mode='border',
                             align_corners=True).clamp(0, 255)
