"""Patch triggers: a small square pattern pasted (or blended) into the image."""
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import TRIGGERS
from ..utils.errors import ConfigValueError, clip
from ..utils.validate import check_number, open_image
from .base import BaseTrigger

Position = Union[str, Sequence[int], Sequence[float]]


def _load_pattern(pattern, size: Optional[int], channels: int, seed: int) -> torch.Tensor:
    """The ``(C, S, S)`` float pattern in [0, 255]."""
    if isinstance(pattern, (np.ndarray, torch.Tensor)):
        t = torch.as_tensor(np.asarray(pattern), dtype=torch.float32)
        if t.dim() == 2:
            t = t[None].expand(channels, -1, -1)
        elif t.shape[-1] in (1, 3) and t.shape[0] not in (1, 3):
            t = t.permute(2, 0, 1)
        return _resize(t.contiguous(), size)
    if size is None and pattern in ('random', 'white', 'black'):
        raise ConfigValueError(f"a '{pattern}' patch trigger needs a size")
    if pattern == 'random':
        g = torch.Generator().manual_seed(int(seed))
        return torch.randint(0, 256, (channels, size, size), generator=g).float()
    if pattern == 'white':
        return torch.full((channels, size, size), 255.)
    if pattern == 'black':
        return torch.zeros(channels, size, size)
    if isinstance(pattern, str):
        if not osp.isfile(pattern):
            raise ConfigValueError(
                f"trigger pattern must be 'random', 'white', 'black', an array or an image "
                f'file; file not found: {pattern}')
        img = np.asarray(open_image(pattern, 'trigger pattern'), dtype=np.float32)
        return _resize(torch.from_numpy(img).permute(2, 0, 1).contiguous(), size)
    raise ConfigValueError(f'unsupported trigger pattern: {pattern!r}')


def _resize(t: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    if size is None or t.shape[-1] == size and t.shape[-2] == size:
        return t
    # antialiased bilinear resize, as a downsampled HTBA trigger should be
    out = F.interpolate(t[None], size=(size, size), mode='bilinear', align_corners=False,
                        antialias=True)[0]
    return out.round().clamp(0, 255)


@TRIGGERS.register_module()
class PatchTrigger(BaseTrigger):
    """A square patch pasted at a fixed or per-sample random position.

    Covers BadEncoder's white square (``pattern='white', size=10, position=(21, 21)``),
    SSL-Backdoor's HTBA images (``pattern='.../trigger_10.png', size=8, position='random',
    area=(0.1, 0.9)``), ESTAS (``position=(0.9, 0.9)``: a ratio of the free range) and BMAIU's
    custom trigger (``pattern='random', size=4, position='random'``).

    Stamping is one vectorized op on the whole batch: per-sample offsets become a mask and a
    gather index, no Python loop over samples.

    Args:
        size (int, optional): Side of the square in pixels. ``None`` keeps an image file's own
            size.
        pattern (str | array): ``'random'`` (uniform 0-255 per pixel and channel, drawn once
            from ``seed``), ``'white'``, ``'black'``, an image file, or an array (HWC or CHW).
        position (str | tuple): ``'random'``: a new top-left corner per image, uniform over
            ``area``; a tuple of ints: fixed top-left ``(y, x)`` in pixels (negative values count
            from the bottom/right edge); a tuple of floats in [0, 1]: fixed top-left at that
            ratio of the free range ``(H - size, W - size)``.
        area (tuple[float, float]): For random positions, the band ``[lo, hi]`` (fractions of
            the side) the patch must lie in: the corner is drawn from ``[lo*H, hi*H - size]``
            (clamped to ``lo*H`` when empty, as SSL-Backdoor does). Defaults to the whole image.
        alpha (float): 1 replaces the pixels; smaller values blend ``(1-a)*x + a*pattern``.
        channels (int): Image channels. Defaults to 3.
        seed (int): Seed of the ``'random'`` pattern.
        img_size (int | tuple, optional): If given, the trigger is checked to fit at build time.
    """

    def __init__(self,
                 size: Optional[int] = None,
                 pattern: Union[str, np.ndarray] = 'random',
                 position: Position = 'random',
                 area: Tuple[float, float] = (0., 1.),
                 alpha: float = 1.,
                 channels: int = 3,
                 seed: int = 0,
                 img_size: Optional[Union[int, Tuple[int, int]]] = None):
        super().__init__()
        check_number('trigger size', size, 1, integer=True, optional=True)
        check_number('trigger alpha', alpha, 0, 1, inclusive=(False, True))
        check_number('trigger channels', channels, 1, integer=True)
        if not isinstance(area, (list, tuple)) or len(area) != 2:
            raise ConfigValueError(f'trigger area must be (lo, hi), got {clip(area)}')
        lo, hi = (check_number('trigger area', a, 0, 1) for a in area)
        if not lo < hi:
            raise ConfigValueError(f'trigger area must satisfy 0 <= lo < hi <= 1, got {area}')
        fixed = isinstance(position, (list, tuple)) and len(position) == 2
        if not (position == 'random' or fixed):
            raise ConfigValueError(f"trigger position must be 'random' or (y, x), got {position!r}")
        self.register_buffer('pattern', _load_pattern(pattern, size, channels, seed))
        self.size = int(self.pattern.shape[-1])
        self.position = position if position == 'random' else tuple(position)
        self.area = (lo, hi)
        self.alpha = float(alpha)
        if img_size is not None:
            h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
            self.sample_positions(1, int(h), int(w), device='cpu')  # size and fixed position

    def check_image_size(self, h: int, w: int) -> None:
        """Raise :class:`ConfigValueError` unless the patch (and a fixed position) fits; draws
        no random numbers."""
        self.check_fits(h, w)
        if self.position != 'random':
            self._fixed_corner(h, w)

    def extra_repr(self) -> str:
        return f'size={self.size}, position={self.position}, area={self.area}, alpha={self.alpha}'

    def check_fits(self, h: int, w: int) -> None:
        """Raise :class:`ConfigValueError` if the patch cannot fit an ``h x w`` image."""
        if self.size > h or self.size > w:
            raise ConfigValueError(
                f'a {self.size}x{self.size} trigger does not fit a {h}x{w} image')

    def _range(self, side: int) -> Tuple[int, int]:
        lo = int(self.area[0] * side)
        hi = max(int(self.area[1] * side) - self.size, lo)
        return lo, min(hi, side - self.size)

    def sample_positions(self, n: int, h: int, w: int, device=None,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Top-left corners ``(n, 2)`` (long, ``[y, x]``) for ``n`` images of size ``h x w``."""
        self.check_fits(h, w)
        if device is None:
            device = generator.device if generator is not None else self.pattern.device
        if self.position == 'random':
            (ylo, yhi), (xlo, xhi) = self._range(h), self._range(w)
            u = torch.rand(n, 2, generator=generator, device=device)
            span = torch.tensor([yhi - ylo + 1, xhi - xlo + 1], device=device)
            return (u * span).long().clamp_max_(span - 1) + torch.tensor([ylo, xlo], device=device)
        return torch.tensor([self._fixed_corner(h, w)], device=device).expand(n, 2)

    def _fixed_corner(self, h: int, w: int) -> Tuple[int, int]:
        y, x = self.position
        if isinstance(y, float) or isinstance(x, float):
            y, x = int(float(y) * (h - self.size)), int(float(x) * (w - self.size))
        y, x = (y + h if y < 0 else y), (x + w if x < 0 else x)
        if not (0 <= y <= h - self.size and 0 <= x <= w - self.size):
            raise ConfigValueError(
                f'a {self.size}x{self.size} trigger at {self.position} leaves the {h}x{w} image')
        return y, x

    def stamp_at(self, imgs: torch.Tensor, positions: torch.Tensor,
                 patterns: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Paste the pattern into float ``imgs`` with top-left corners ``positions`` ``(B, 2)``.

        One scatter of the ``S*S`` patch pixels per image into the flattened images (only the
        patch is touched: no full-image mask).  ``patterns`` ``(B, C, S, S)``, if given, are
        per-image patterns used instead of :attr:`pattern`.
        """
        b, c, h, w = imgs.shape
        pat = (self.pattern if patterns is None else patterns).to(imgs.device, imgs.dtype)
        s = pat.shape[-1]
        if pat.shape[-3] != c:
            raise ConfigValueError(f'trigger has {pat.shape[-3]} channels, images have {c}')
        pos = positions.to(imgs.device).long()
        off = torch.arange(s, device=imgs.device)
        rows = (pos[:, :1] + off[None]) * w  # (B, S) flat row offsets
        idx = (rows[:, :, None] + pos[:, 1:, None] + off[None, None]).reshape(b, 1, s * s)
        idx = idx.expand(b, c, s * s)
        out = imgs.reshape(b, c, h * w).clone()
        vals = pat.reshape(-1, c, s * s).expand(b, c, s * s)
        if self.alpha < 1.:
            vals = (1 - self.alpha) * out.gather(2, idx) + self.alpha * vals
        return out.scatter_(2, idx, vals).view(b, c, h, w)

    def stamp_float(self, imgs: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        pos = self.sample_positions(imgs.shape[0], imgs.shape[2], imgs.shape[3],
                                    device=imgs.device if generator is None else generator.device,
                                    generator=generator)
        return self.stamp_at(imgs, pos)


@TRIGGERS.register_module()
class RandomPatchFamily(PatchTrigger):
    """A family of patch triggers: a new random pattern, size and position for every image.

    Where :class:`PatchTrigger` is one trigger, this samples from a distribution of small
    patches: each call draws one side ``S`` uniformly from ``sizes`` (shared by the batch, so
    stamping stays one scatter), and each image gets its own uniform 0-255 pattern and its own
    position.  A defense that fine-tunes the encoder to ignore such patches removes its
    sensitivity to small patches in general rather than to one pattern (docs/results.md, BMAIU
    stage 2).  The family never reads any attacker's trigger.

    Args:
        sizes (tuple[int, int]): Inclusive range of patch sides.
        area (tuple[float, float]): Band the patch lies in, as :class:`PatchTrigger`'s.
        channels (int): Image channels.
        img_size (int | tuple, optional): Checked at build time against the largest side.
    """

    def __init__(self, sizes: Tuple[int, int] = (3, 10), area: Tuple[float, float] = (0., 1.),
                 channels: int = 3, img_size: Optional[Union[int, Tuple[int, int]]] = None,
                 seed: int = 0):
        if not isinstance(sizes, (list, tuple)) or len(sizes) != 2:
            raise ConfigValueError(f'trigger sizes must be (min, max), got {clip(sizes)}')
        lo, hi = (check_number('trigger sizes', v, 1, integer=True) for v in sizes)
        if not lo <= hi:
            raise ConfigValueError(f'trigger sizes must satisfy 0 < min <= max, got {sizes}')
        super().__init__(size=hi, pattern='black', position='random', area=area,
                         channels=channels, img_size=img_size)
        self.sizes = (lo, hi)
        self.channels = channels

    def extra_repr(self) -> str:
        return f'sizes={self.sizes}, area={self.area}'

    def stamp_float(self, imgs: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        dev = imgs.device if generator is None else generator.device
        lo, hi = self.sizes
        s = int(torch.randint(lo, hi + 1, (1,), generator=generator, device=dev).item())
        pats = torch.randint(0, 256, (imgs.shape[0], imgs.shape[1], s, s), generator=generator,
                             device=dev).to(imgs.dtype)
        self.size = s  # positions are drawn for this call's side
        try:
            pos = self.sample_positions(imgs.shape[0], imgs.shape[2], imgs.shape[3], device=dev,
                                        generator=generator)
        finally:
            self.size = hi
        return self.stamp_at(imgs, pos, patterns=pats)
