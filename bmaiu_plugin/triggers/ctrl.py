"""CTRL's frequency-domain trigger.

Li et al., "An Embarrassingly Simple Backdoor Attack on Self-supervised Learning", ICCV 2023;
official code: github.com/meet-cs/CTRL (``utils/frequency.py``).
"""
import math
from typing import Optional, Sequence, Tuple

import torch

from ..registry import TRIGGERS
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number
from .base import BaseTrigger

# BT.601 analog YUV as in kornia.color.rgb_to_yuv (what CTRL's code uses)
_RGB2YUV = torch.tensor([[0.299, 0.587, 0.114],
                         [-0.147, -0.289, 0.436],
                         [0.615, -0.515, -0.100]], dtype=torch.float64)


def dct_matrix(n: int, dtype=torch.float64) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``D`` (``X = D x D^T`` transforms an ``n x n`` block)."""
    k = torch.arange(n, dtype=dtype)[:, None]
    i = torch.arange(n, dtype=dtype)[None]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2. / n)
    d[0] /= math.sqrt(2.)
    return d


def blockwise(x: torch.Tensor, window: int, mat: torch.Tensor) -> torch.Tensor:
    """Apply ``mat @ block @ mat^T`` to every ``window x window`` block of ``(B, C, H, W)``."""
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // window, window, w // window, window)
    out = torch.einsum('ij,bcyjxk,lk->bcyixl', mat, blocks, mat)
    return out.reshape(b, c, h, w)


@TRIGGERS.register_module()
class CTRLTrigger(BaseTrigger):
    """Add ``magnitude`` to fixed DCT coefficients of the U and V channels of every block.

    Steps, on pixel values in [0, 255]: RGB -> YUV (BT.601, kornia's matrix); per channel in
    ``channels``, orthonormal DCT-II of every ``window x window`` block; add ``magnitude`` at each
    ``positions`` coefficient; inverse DCT; YUV -> RGB (the exact inverse of the forward matrix,
    so a zero magnitude is an identity; kornia's rounded inverse constants differ by <0.1%);
    clamp to [0, 255].

    Args:
        magnitude (float): Coefficient shift on the 0-255 scale. CTRL's CIFAR-10 setting: 100.
        positions (Sequence[tuple[int, int]]): DCT coefficients to shift. CTRL: (15, 15), (31, 31).
        window (int): Block side. CTRL: 32 (the whole CIFAR image).
        channels (Sequence[int]): YUV channels to modify (1 = U, 2 = V).
    """

    def __init__(self,
                 magnitude: float = 100.,
                 positions: Sequence[Tuple[int, int]] = ((15, 15), (31, 31)),
                 window: int = 32,
                 channels: Sequence[int] = (1, 2)):
        super().__init__()
        self.magnitude = check_number('CTRL magnitude', magnitude)
        self.window = check_number('CTRL window', window, 1, integer=True)
        self.positions = [tuple(int(v) for v in p) for p in positions]
        self.channels = [int(c) for c in channels]
        for p in self.positions:
            if len(p) != 2 or not all(0 <= v < self.window for v in p):
                raise ConfigValueError(
                    f'CTRL position {p} is outside the {self.window}x{self.window} DCT block')
        if not set(self.channels) <= {0, 1, 2}:
            raise ConfigValueError(f'CTRL channels must be YUV indices 0-2, got {channels}')
        self.register_buffer('dct', dct_matrix(self.window).float(), persistent=False)
        self.register_buffer('rgb2yuv', _RGB2YUV.float(), persistent=False)
        self.register_buffer('yuv2rgb', torch.linalg.inv(_RGB2YUV).float(), persistent=False)
        delta = torch.zeros(3, self.window, self.window)
        for c in self.channels:
            for (u, v) in self.positions:
                delta[c, u, v] = self.magnitude
        self.register_buffer('delta', delta, persistent=False)

    def extra_repr(self) -> str:
        return f'magnitude={self.magnitude}, positions={self.positions}, window={self.window}'

    def check_image_size(self, h: int, w: int) -> None:
        """Raise :class:`ConfigValueError` unless the DCT window tiles ``h x w`` images."""
        self.frequency_delta(h, w)

    def frequency_delta(self, h: int, w: int) -> torch.Tensor:
        """The ``(3, H, W)`` YUV-DCT-domain shift (every block gets the same one)."""
        if h % self.window or w % self.window:
            raise ConfigValueError(
                f'CTRL window {self.window} does not tile a {h}x{w} image')
        return self.delta.repeat(1, h // self.window, w // self.window)

    def stamp_float(self, imgs: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        b, c, h, w = imgs.shape
        if c != 3:
            raise ConfigValueError(f'the CTRL trigger needs RGB images, got {c} channels')
        # the transform is linear, so adding the shift in the DCT domain equals adding its
        # inverse DCT in the YUV pixel domain: one small precomputed pattern
        pix = blockwise(self.frequency_delta(h, w)[None].to(imgs), self.window,
                        self.dct.to(imgs).t())  # inverse DCT: D^T X D
        rgb_delta = torch.einsum('ij,bjhw->bihw', self.yuv2rgb.to(imgs), pix)
        return (imgs + rgb_delta).clamp(0, 255)
