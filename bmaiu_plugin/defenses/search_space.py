"""Searched triggers beyond patches: the search space of the searched-trigger defense.

Each member is a trigger ``T_theta`` (a :class:`~bmaiu_plugin.triggers.BaseTrigger`: it stamps
batches like any trigger, so the unlearning loss and the probe use it unchanged) whose
unconstrained parameters ``theta`` (a buffer: saved, resumed, broadcast) are searched label-free
on a frozen encoder ``f`` (:func:`search_collapse`)::

    theta* = argmax_theta  collapse(f(T_theta(x))) - penalty(theta)

``collapse`` is the mean pairwise cosine of the triggered features, DECREE's signature of a
backdoor (within each group where a member deals images into groups, e.g. one per window).
Each member's budget bounds what it may do to an image, so that a clean encoder has nothing
large to collapse on:

============================  ==========================================  ====================
member                        ``T_theta(x)``                              covers
============================  ==========================================  ====================
:class:`WindowPatchSearch`    an ``S x S`` pattern per grid window, at    fixed-place patches
                              the window's fixed place                    (``S - stride + 1``)
:class:`MaskPatternSearch`    ``(1 - m) x + m p``, ``sum(m) <= area``     blends, any-shape
                              (DECREE / Neural Cleanse)                   patches
:class:`AdditiveSearch`       ``x + eps tanh(theta)``, L-inf ``<= eps``   frequency triggers,
                                                                          faint blends
:class:`WarpSearch`           ``x`` resampled on a smooth field of at     warps (WaNet)
                              most ``0.7 strength`` px
============================  ==========================================  ====================

The patch pasted at a random place per image stays the defense's first member
(:func:`~bmaiu_plugin.defenses.trigger_search.search_patch_pattern`).
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.features import grouped_pairwise_cosine, mean_pairwise_cosine, pool_features
from ..registry import TRIGGERS
from ..triggers import BaseTrigger, PatchTrigger
from ..triggers.warp import warp_grid
from ..utils.data import eval_mode
from ..utils.device import module_device
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number

__all__ = ['SearchableTrigger', 'WindowPatchSearch', 'MaskPatternSearch', 'AdditiveSearch',
           'WarpSearch', 'check_search_batch', 'search_collapse', 'window_grid']

Groups = Optional[torch.Tensor]


def _hw(img_size) -> Tuple[int, int]:
    hw = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(hw) != 2:
        raise ConfigValueError(f'img_size must be an int or (H, W), got {img_size!r}')
    return tuple(check_number('img_size', v, 1, integer=True) for v in hw)


class SearchableTrigger(BaseTrigger):
    """A trigger ``T_theta`` whose parameters ``theta`` are searched (:func:`search_collapse`).

    Subclasses implement :meth:`stamp_with`, the differentiable stamp under any ``theta``, and
    may add a :meth:`penalty`; :attr:`family` names the member in reports.
    """

    family = 'searched'
    #: how many groups :meth:`stamp_with` deals images into (1: none)
    num_groups = 1

    def __init__(self, theta: torch.Tensor):
        super().__init__()
        self.register_buffer('theta', theta.float())

    def stamp_with(self, imgs: torch.Tensor, theta: torch.Tensor,
                   generator: Optional[torch.Generator] = None
                   ) -> Tuple[torch.Tensor, Groups]:
        """``(T_theta(imgs), groups)``: float images in [0, 255] and each image's group
        (``None``: one group)."""
        raise NotImplementedError

    def penalty(self, theta: torch.Tensor) -> torch.Tensor:
        """The budget's penalty (0: the bound is in the parametrization)."""
        return theta.new_zeros(())

    def stamp_float(self, imgs: torch.Tensor,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return self.stamp_with(imgs, self.theta.to(imgs), generator)[0]

    def group_trigger(self, k: int) -> BaseTrigger:
        """The trigger of group ``k`` alone under the current ``theta`` (itself when the member
        has one group)."""
        return self


@TRIGGERS.register_module()
class WindowPatchSearch(SearchableTrigger):
    """One ``size x size`` pattern per window of a grid, each pasted at its window's fixed place
    (the images of a batch dealt out evenly over the windows).  Fixed-place triggers fire only
    where they were implanted; every ``size - stride + 1``-pixel patch lies inside some window.

    Args:
        size (int): Window side. stride (int): Grid step. img_size (int | tuple): Image side.
        channels (int): Image channels. seed (int): Start patterns.
    """

    family = 'window'

    def __init__(self, size: int = 10, stride: int = 6, img_size=32, channels: int = 3,
                 seed: int = 0):
        check_number('window size', size, 1, integer=True)
        check_number('window stride', stride, 1, integer=True)
        positions = window_grid(*_hw(img_size), size, stride)
        g = torch.Generator().manual_seed(int(seed))
        super().__init__(torch.randn(len(positions), channels, size, size, generator=g))
        self.num_groups = len(positions)
        self.register_buffer('positions', positions)
        self.paste = PatchTrigger(size=size, pattern='white', position=(0, 0)).stamp_at

    def stamp_with(self, imgs, theta, generator=None):
        # dealt out evenly, so that every window holds at least two images of a batch of 2 W
        win = torch.randperm(len(imgs), generator=generator, device=imgs.device) % self.num_groups
        patterns = 127.5 * (torch.tanh(theta) + 1)
        return self.paste(imgs, self.positions[win], patterns=patterns[win]), win

    def group_trigger(self, k: int) -> PatchTrigger:
        """Window ``k``'s pattern (rounded) as a fixed-place patch."""
        pattern = (127.5 * (torch.tanh(self.theta[k]) + 1)).round().clamp(0, 255)
        return PatchTrigger(size=pattern.shape[-1], pattern=pattern.cpu().numpy(),
                            position=tuple(self.positions[k].tolist())).to(self.theta.device)


@TRIGGERS.register_module()
class MaskPatternSearch(SearchableTrigger):
    """``(1 - m) x + m p`` with a full-image mask ``m = sigmoid(theta_0)`` of area at most
    ``area`` pixels (penalty ``penalty * relu(sum(m) - area) / area``) and pattern
    ``p = 255 sigmoid(theta_1:)``: DECREE / Neural Cleanse's trigger with its area bounded.
    A blend at ``alpha`` is the uniform mask of area ``alpha H W``.

    Args:
        area (float): Mask area bound in pixels. penalty (float): Weight of the excess.
        img_size (int | tuple): Image side. channels (int): Image channels.
        seed (int): Start mask and pattern.
    """

    family = 'mask'

    def __init__(self, area: float = 200., penalty: float = 10., img_size=32,
                 channels: int = 3, seed: int = 0):
        self.area = check_number('mask area', area, 0, inclusive=(False, True))
        self.penalty_weight = check_number('mask penalty', penalty, 0)
        h, w = _hw(img_size)
        g = torch.Generator().manual_seed(int(seed))
        mask = torch.full((1, h, w), -3.) + 0.1 * torch.randn(1, h, w, generator=g)
        super().__init__(torch.cat([mask, torch.randn(channels, h, w, generator=g)]))

    @staticmethod
    def mask_pattern(theta: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(m (1, H, W) in [0, 1], p (C, H, W) in [0, 255])``."""
        return torch.sigmoid(theta[:1]), 255 * torch.sigmoid(theta[1:])

    def stamp_with(self, imgs, theta, generator=None):
        m, p = self.mask_pattern(theta)
        return (1 - m) * imgs + m * p, None

    def penalty(self, theta):
        return self.penalty_weight * F.relu(torch.sigmoid(theta[:1]).sum() - self.area) / self.area


@TRIGGERS.register_module()
class AdditiveSearch(SearchableTrigger):
    """``x + eps tanh(theta)``: a full-image additive perturbation, L-inf at most ``eps``
    (0-255 scale).

    Args:
        eps (float): The bound. img_size (int | tuple): Image side. channels (int): Channels.
        seed (int): Start perturbation.
    """

    family = 'additive'

    def __init__(self, eps: float = 16., img_size=32, channels: int = 3, seed: int = 0):
        self.eps = check_number('additive eps', eps, 0, 255, inclusive=(False, True))
        g = torch.Generator().manual_seed(int(seed))
        super().__init__(0.1 * torch.randn(channels, *_hw(img_size), generator=g))

    def stamp_with(self, imgs, theta, generator=None):
        return (imgs + self.eps * torch.tanh(theta)).clamp(0, 255), None


@TRIGGERS.register_module()
class WarpSearch(SearchableTrigger):
    """``x`` resampled (bilinear ``grid_sample``) on ``identity + strength tanh(theta)_up / H``
    with ``theta`` a ``2 x k x k`` control grid upsampled bicubically (WaNet's field, searched):
    each pixel moves by at most ``strength / 2`` pixels at the control points and about
    ``0.7 strength`` between them (the bicubic overshoot).

    Args:
        k (int): Control grid side. strength (float): The bound. seed (int): Start field.
    """

    family = 'warp'

    def __init__(self, k: int = 4, strength: float = 2., seed: int = 0):
        check_number('warp k', k, 2, integer=True)
        self.strength = check_number('warp strength', strength, 0, inclusive=(False, True))
        g = torch.Generator().manual_seed(int(seed))
        super().__init__(0.1 * torch.randn(1, 2, k, k, generator=g))

    def stamp_with(self, imgs, theta, generator=None):
        b, _, h, w = imgs.shape
        grid = warp_grid(torch.tanh(theta), self.strength, h, w).expand(b, h, w, 2)
        return F.grid_sample(imgs, grid, mode='bilinear', padding_mode='border',
                             align_corners=True), None


def window_grid(h: int, w: int, size: int, stride: int) -> torch.Tensor:
    """Top-left corners ``(W, 2)`` of ``size x size`` windows every ``stride`` pixels, the last
    row and column flush with the border (every pixel is in some window)."""
    def starts(n):
        if size > n:
            raise ConfigValueError(f'a {size}x{size} window does not fit a {h}x{w} image')
        return sorted(set(range(0, n - size + 1, stride)) | {n - size})
    ys, xs = starts(h), starts(w)
    return torch.tensor([(y, x) for y in ys for x in xs], dtype=torch.long)


def check_search_batch(trigger: SearchableTrigger, batch_size: int, what: str = 'search',
                       key: str = 'batch_size') -> int:
    """``batch_size`` if every group of ``trigger`` gets two images of a search batch, else one
    clear error naming ``what`` and its ``key`` (a grid of ``W`` windows needs ``2 W``)."""
    need = 2 * trigger.num_groups
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size < need:
        raise ConfigValueError(
            f'{what} ({type(trigger).__name__}) deals each search batch over '
            f'{trigger.num_groups} groups and needs {key} >= {need}, got {batch_size}: raise '
            'the batch size or the stride')
    return check_number(f'{what} {key}', batch_size, need, integer=True)


def search_collapse(trigger: SearchableTrigger, encoder: nn.Module, normalizer: nn.Module,
                    imgs: torch.Tensor, steps: int = 200, lr: float = 0.1,
                    batch_size: int = 128, seed: int = 0) -> Tuple[torch.Tensor, Dict]:
    """Search ``trigger``'s ``theta``, warm-started from its current one, for the largest
    collapse of ``encoder``'s triggered features, minus the member's penalty.

    Args:
        trigger (SearchableTrigger): The member (left unchanged: the result is returned).
        encoder (nn.Module): The encoder (used in eval mode; its weights get no ``.grad``).
        normalizer (nn.Module): Pixel space to the encoder's input.
        imgs (Tensor): ``(N, C, H, W)`` uint8 clean images, ``N >= 2``.
        steps (int): Adam steps. lr (float): Adam learning rate. batch_size (int): Images per
            step (at least two per group). seed (int): Batches and the member's random draws.

    Returns:
        tuple: ``(theta, info)``: the searched ``theta`` (on the CPU) and the collapse of a fixed
        evaluation batch before and after (``start``, ``end``).
    """
    check_number('search steps', steps, 1, integer=True)
    check_search_batch(trigger, batch_size)
    if len(imgs) < 2:
        raise ConfigValueError('a trigger search needs at least 2 images')
    device = module_device(encoder)
    g = torch.Generator().manual_seed(int(seed))
    gen = torch.Generator(device=device).manual_seed(int(seed))
    theta = trigger.theta.detach().clone().float().to(device).requires_grad_()
    opt = torch.optim.Adam([theta], lr=lr)

    def collapse(x, th, generator):
        xt, groups = trigger.stamp_with(x.float(), th, generator)
        feats = pool_features(encoder(normalizer(xt)))
        if groups is None:
            return mean_pairwise_cosine(feats)
        # every group holds two images or more (dealt evenly, batch_size >= 2 num_groups)
        return grouped_pairwise_cosine(feats, groups, trigger.num_groups).mean()

    eval_x = imgs[:min(len(imgs), max(batch_size, 256))].to(device)

    @torch.no_grad()
    def measure(th):
        return round(float(collapse(eval_x, th, torch.Generator(device=device).manual_seed(1))),
                     4)

    with eval_mode(encoder):
        start = measure(theta)
        for _ in range(int(steps)):
            x = imgs[torch.randperm(len(imgs), generator=g)[:batch_size]].to(device)
            loss = -collapse(x, theta, gen) + trigger.penalty(theta)
            theta.grad, = torch.autograd.grad(loss, [theta])
            opt.step()
        end = measure(theta)
    return theta.detach().cpu(), dict(start=start, end=end)
