"""Blended trigger: a full-image pattern mixed into every pixel.

Chen et al., "Targeted Backdoor Attacks on Deep Learning Systems Using Data Poisoning",
arXiv:1712.05526, 2017 (the *blended injection* strategy): ``x' = (1 - alpha) x + alpha k``.
"""
import os.path as osp
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import TRIGGERS
from ..utils.errors import ConfigValueError, clip
from ..utils.validate import check_number, open_image
from .base import BaseTrigger


@TRIGGERS.register_module()
class BlendTrigger(BaseTrigger):
    """Blend a full-image pattern ``k`` into the images: ``(1 - alpha) * x + alpha * k``.

    Args:
        pattern (str): ``'noise'`` (uniform 0-255 per pixel and channel, drawn once from
            ``seed``) or an image file. The pattern is resized (bilinear, antialiased) to the
            images it is stamped on.
        alpha (float): Blend ratio in (0, 1]; Chen et al. use 0.1-0.2 for training. Defaults to
            0.2.
        size (int | tuple): Side (or ``(H, W)``) of the ``'noise'`` pattern. Defaults to 32.
        channels (int): Image channels. Defaults to 3.
        seed (int): Seed of the noise pattern.
    """

    def __init__(self, pattern: str = 'noise', alpha: float = 0.2,
                 size=32, channels: int = 3, seed: int = 0):
        super().__init__()
        self.alpha = check_number('blend alpha', alpha, 0, 1, inclusive=(False, True))
        check_number('blend channels', channels, 1, integer=True)
        hw = (size, size) if isinstance(size, int) else tuple(size)
        if len(hw) != 2:
            raise ConfigValueError(f'blend size must be an int or (H, W), got {size!r}')
        for v in hw:
            check_number('blend size', v, 1, integer=True)
        if pattern == 'noise':
            g = torch.Generator().manual_seed(int(seed))
            pat = torch.randint(0, 256, (channels, *hw), generator=g).float()
        elif isinstance(pattern, str) and osp.isfile(pattern):
            img = np.asarray(open_image(pattern, 'blend pattern'), dtype=np.float32)
            pat = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        else:
            found = 'file not found: ' if isinstance(pattern, str) else 'got '
            raise ConfigValueError(f"blend pattern must be 'noise' or an image file; "
                                   f'{found}{clip(pattern)}')
        self.register_buffer('pattern', pat)

    def extra_repr(self) -> str:
        return f'alpha={self.alpha}, pattern_size={tuple(self.pattern.shape[-2:])}'

    def pattern_for(self, hw: Tuple[int, int], like: Optional[torch.Tensor] = None
                    ) -> torch.Tensor:
        """The ``(C, H, W)`` pattern at image size ``hw`` (resized when it differs)."""
        pat = self.pattern if like is None else self.pattern.to(like)
        if tuple(pat.shape[-2:]) == tuple(hw):
            return pat
        return F.interpolate(pat[None], size=hw, mode='bilinear', align_corners=False,
                             antialias=True)[0].clamp(0, 255)

    def stamp_float(self, imgs: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        pat = self.pattern_for(tuple(imgs.shape[-2:]), imgs)
        if pat.shape[0] != imgs.shape[1]:
            raise ConfigValueError(f'blend pattern has {pat.shape[0]} channels, images have '
                                   f'{imgs.shape[1]}')
        return (1 - self.alpha) * imgs + self.alpha * pat
