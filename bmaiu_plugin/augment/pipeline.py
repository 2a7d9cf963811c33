"""Device view pipelines: config dicts named after mmpretrain's CPU transforms.

A view recipe is written like the CPU one (``dict(type='RandomResizedCrop', ...)``, ...) and
runs on a whole batch on the device through :mod:`bmaiu_plugin.augment.ops`.  The names are
*not* registered in mmpretrain's ``TRANSFORMS`` (those stay the CPU ones); they are looked up in
:data:`DEVICE_TRANSFORMS` by :func:`build_view_pipeline`.

Differences from the CPU path (mmpretrain transforms with ``backend='pillow'`` on uint8 RGB
arrays), all of which keep the parameter distributions identical:

* Images stay float between ops (the CPU path rounds to uint8 after each transform).
* ``RandomResizedCrop`` resamples with ``grid_sample`` (half-pixel centres, coordinates clamped
  to the crop box, no antialiasing): PIL's bilinear resize of the crop within one grey level
  when the crop is upscaled (always on 32x32 CIFAR views); PIL antialiases when a crop is
  *larger* than the output, this op does not; bicubic reads neighbours outside the box at its
  edges.
* ``ColorJitter``: contrast and saturation blend with the RGB luminance
  ``0.299 R + 0.587 G + 0.114 B``; mmcv's pillow backend treats the (RGB) CIFAR arrays as BGR and
  so weighs R and B the other way round (a small, image-dependent difference).  Hue is rotated
  in float HSV; PIL quantizes hue to 256 levels and mmcv truncates the shift to ``int(255 h)``
  steps, and the BGR reading mirrors the hue circle (a shift of ``+h`` there is ``-h`` here; the
  symmetric range makes the distributions equal).
* ``GaussianBlur``: an exact separable Gaussian (``+-3 sigma`` support, edges replicated); PIL's
  ``GaussianBlur(radius=sigma)`` approximates it with repeated box blurs.
* ``RandomGrayscale`` rounds like the other ops (mmcv truncates to uint8).
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import ops

Size = Union[int, Tuple[int, int], None]


class DeviceTransform:
    """A batched random transform: ``t(imgs, generator) -> imgs``."""

    def __call__(self, imgs: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'{type(self).__name__}({args})'


class RandomResizedCrop(DeviceTransform):
    """mmpretrain's ``RandomResizedCrop`` (same argument names).

    Args:
        scale (int | tuple[int, int], optional): Output size ``(h, w)`` (an int: square); the
            input size when None.
        crop_ratio_range (tuple[float, float]): Crop area over image area.
        aspect_ratio_range (tuple[float, float]): Crop width over height.
        max_attempts (int): Candidates per sample before the central-crop fallback.
        interpolation (str): ``'bilinear'``, ``'bicubic'`` or ``'nearest'``.
    """

    def __init__(self, scale: Size = None, crop_ratio_range=(0.08, 1.),
                 aspect_ratio_range=(3. / 4., 4. / 3.), max_attempts: int = 10,
                 interpolation: str = 'bilinear', backend: Optional[str] = None):
        if interpolation not in ('bilinear', 'bicubic', 'nearest'):
            raise ValueError(f'interpolation must be bilinear, bicubic or nearest, '
                             f'got {interpolation!r}')
        self.scale = (scale, scale) if isinstance(scale, int) else \
            (tuple(scale) if scale is not None else None)
        self.crop_ratio_range = tuple(crop_ratio_range)
        self.aspect_ratio_range = tuple(aspect_ratio_range)
        self.max_attempts = int(max_attempts)
        self.interpolation = interpolation
        del backend  # accepted for config compatibility with mmpretrain; always grid_sample

    def __call__(self, imgs, generator=None, flip_prob: float = 0.):
        return ops.random_resized_crop(imgs, self.scale, self.crop_ratio_range,
                                       self.aspect_ratio_range, self.max_attempts,
                                       self.interpolation, flip_prob, generator)


class RandomFlip(DeviceTransform):
    """Horizontal flip with probability ``prob`` (mmcv's ``RandomFlip``, horizontal only)."""

    def __init__(self, prob: float = 0.5, direction: str = 'horizontal'):
        if direction != 'horizontal':
            raise ValueError(f"only direction='horizontal' is supported, got {direction!r}")
        self.prob = float(prob)

    def __call__(self, imgs, generator=None):
        return ops.random_hflip(imgs, self.prob, generator)


class ColorJitter(DeviceTransform):
    """mmpretrain's ``ColorJitter`` inside ``RandomApply(prob=prob)``.

    Args:
        brightness, contrast, saturation (float | tuple): Factor ranges (see
            :func:`~bmaiu_plugin.augment.ops.color_jitter`).
        hue (float | tuple): Hue shift range in turns.
        prob (float): ``RandomApply`` probability. Defaults to 1 (always).
        random_order (bool): Per-sample random op order, as mmpretrain. Defaults to True.
    """

    def __init__(self, brightness=0., contrast=0., saturation=0., hue=0., prob: float = 1.,
                 random_order: bool = True, backend: Optional[str] = None):
        self.brightness, self.contrast = brightness, contrast
        self.saturation, self.hue = saturation, hue
        self.prob = float(prob)
        self.random_order = bool(random_order)
        ops.sample_color_jitter(1, brightness, contrast, saturation, hue)  # validate ranges
        del backend

    def __call__(self, imgs, generator=None):
        return ops.color_jitter(imgs, self.brightness, self.contrast, self.saturation, self.hue,
                                self.prob, self.random_order, generator)


class RandomGrayscale(DeviceTransform):
    """mmcv's ``RandomGrayscale`` with ``keep_channels=True``; weights in the images' (RGB)
    channel order."""

    def __init__(self, prob: float = 0.1, channel_weights: Sequence[float] = ops.LUMA_RGB,
                 keep_channels: bool = True):
        if not keep_channels:
            raise ValueError('the device RandomGrayscale keeps the channels (keep_channels=True)')
        self.prob = float(prob)
        self.channel_weights = tuple(float(w) for w in channel_weights)

    def __call__(self, imgs, generator=None):
        return ops.random_grayscale(imgs, self.prob, self.channel_weights, generator)


class GaussianBlur(DeviceTransform):
    """mmpretrain's ``GaussianBlur`` with ``magnitude_std='inf'``: sigma uniform in
    ``magnitude_range``, applied with probability ``prob``.

    Args:
        magnitude_range (tuple[float, float]): Sigma range in pixels.
        prob (float): Probability per sample.
        kernel_size (int, optional): Odd kernel side; ``+-3 max sigma`` by default.
    """

    def __init__(self, magnitude_range=(0.1, 2.), prob: float = 0.5,
                 kernel_size: Optional[int] = None, magnitude_std='inf'):
        if magnitude_std != 'inf':
            raise ValueError("the device GaussianBlur draws sigma uniformly "
                             "(magnitude_std='inf')")
        self.magnitude_range = tuple(float(v) for v in magnitude_range)
        self.prob = float(prob)
        self.kernel_size = kernel_size

    def __call__(self, imgs, generator=None):
        return ops.random_gaussian_blur(imgs, self.magnitude_range, self.prob,
                                        self.kernel_size, generator)


class Solarize(DeviceTransform):
    """mmpretrain's ``Solarize``: ``255 - x`` for pixels ``>= thr``, with probability ``prob``."""

    def __init__(self, thr: float = 128., prob: float = 0.5):
        self.thr, self.prob = float(thr), float(prob)

    def __call__(self, imgs, generator=None):
        return ops.random_solarize(imgs, self.prob, self.thr, generator)


#: The device transforms by config ``type``.
DEVICE_TRANSFORMS: Dict[str, type] = {
    c.__name__: c for c in (RandomResizedCrop, RandomFlip, ColorJitter, RandomGrayscale,
                            GaussianBlur, Solarize)
}


class ViewPipeline:
    """A sequence of device transforms, called on a whole batch.

    A ``RandomResizedCrop`` directly followed by a horizontal ``RandomFlip`` is fused into one
    resampling (the flip mirrors the crop's sampling grid).
    """

    def __init__(self, transforms: Sequence[DeviceTransform]):
        self.transforms = list(transforms)

    def __call__(self, imgs: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        i, ts = 0, self.transforms
        while i < len(ts):
            t = ts[i]
            if isinstance(t, RandomResizedCrop) and i + 1 < len(ts) and \
                    isinstance(ts[i + 1], RandomFlip):
                imgs = t(imgs, generator, flip_prob=ts[i + 1].prob)
                i += 2
                continue
            imgs = t(imgs, generator)
            i += 1
        return imgs

    def __repr__(self) -> str:
        return 'ViewPipeline(' + ', '.join(map(repr, self.transforms)) + ')'


def build_view_pipeline(cfgs: Sequence[Union[dict, DeviceTransform]]) -> ViewPipeline:
    """Build a :class:`ViewPipeline` from ``dict(type=..., **kwargs)`` entries."""
    out = []
    for cfg in cfgs:
        if isinstance(cfg, DeviceTransform):
            out.append(cfg)
            continue
        cfg = dict(cfg)
        name = cfg.pop('type')
        if name == 'RandomApply':  # mmpretrain's wrapper around one transform
            inner = list(cfg.pop('transforms'))
            if len(inner) != 1:
                raise ValueError('RandomApply on the device wraps exactly one transform')
            cfg = dict(inner[0], prob=cfg.pop('prob', 0.5))
            name = cfg.pop('type')
        if name not in DEVICE_TRANSFORMS:
            raise ValueError(f'unknown device transform {name!r}; available: '
                             f'{sorted(DEVICE_TRANSFORMS)}')
        out.append(DEVICE_TRANSFORMS[name](**cfg))
    return ViewPipeline(out)


# -------------------------------------------------------------------------------- presets
_JITTER_04 = dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                  prob=0.8)
#: ``name -> (num_views, [view pipeline, ...])``.  Crop sizes are the input size (``scale``
#: None); the ImageNet recipes' blur sigmas are in pixels of 224x224 images.
PRESETS: Dict[str, Tuple[Union[int, List[int]], List[List[dict]]]] = {
    # configs/_base_/datasets/cifar10_ssl.py (SimCLR, BYOL and MoCo v2 CIFAR-10 configs)
    'cifar10_ssl': (2, [[
        dict(type='RandomResizedCrop', crop_ratio_range=(0.2, 1.)),
        dict(type='RandomFlip', prob=0.5),
        _JITTER_04,
        dict(type='RandomGrayscale', prob=0.2),
    ]]),
    # mmpretrain imagenet_bs32_simclr.py
    'simclr': (2, [[
        dict(type='RandomResizedCrop'),
        dict(type='RandomFlip', prob=0.5),
        dict(type='ColorJitter', brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2,
             prob=0.8),
        dict(type='RandomGrayscale', prob=0.2),
        dict(type='GaussianBlur', magnitude_range=(0.1, 2.), prob=0.5),
    ]]),
    # mmpretrain imagenet_bs32_byol.py: two asymmetric views
    'byol': ([1, 1], [
        [dict(type='RandomResizedCrop', interpolation='bicubic'),
         dict(type='RandomFlip', prob=0.5),
         dict(_JITTER_04, saturation=0.2),
         dict(type='RandomGrayscale', prob=0.2),
         dict(type='GaussianBlur', magnitude_range=(0.1, 2.), prob=1.)],
        [dict(type='RandomResizedCrop', interpolation='bicubic'),
         dict(type='RandomFlip', prob=0.5),
         dict(_JITTER_04, saturation=0.2),
         dict(type='RandomGrayscale', prob=0.2),
         dict(type='GaussianBlur', magnitude_range=(0.1, 2.), prob=0.1),
         dict(type='Solarize', thr=128, prob=0.2)],
    ]),
    # mmpretrain imagenet_bs32_mocov2.py
    'mocov2': (2, [[
        dict(type='RandomResizedCrop', crop_ratio_range=(0.2, 1.)),
        _JITTER_04,
        dict(type='RandomGrayscale', prob=0.2),
        dict(type='GaussianBlur', magnitude_range=(0.1, 2.), prob=0.5),
        dict(type='RandomFlip', prob=0.5),
    ]]),
}


def resolve_views(transforms: Union[str, Sequence], num_views: Union[int, Sequence[int], None]
                  ) -> Tuple[List[int], List[List[dict]]]:
    """Normalize a preset name or mmpretrain ``MultiView``-style arguments.

    Args:
        transforms (str | list): A :data:`PRESETS` name, one pipeline (a list of dicts) or a
            list of pipelines.
        num_views (int | list[int], optional): Views per pipeline (``MultiView`` semantics: an
            int repeats a single pipeline). Defaults to the preset's, or 2.

    Returns:
        tuple: ``(views per pipeline, pipelines)``.
    """
    if isinstance(transforms, str):
        if transforms not in PRESETS:
            raise ValueError(f'unknown view preset {transforms!r}; available: {sorted(PRESETS)}')
        preset_n, transforms = copy.deepcopy(PRESETS[transforms])
        num_views = preset_n if num_views is None else num_views
    transforms = list(transforms)
    if transforms and isinstance(transforms[0], (dict, DeviceTransform)):
        transforms = [transforms]  # a single pipeline
    num_views = 2 if num_views is None else num_views
    if isinstance(num_views, int):
        if len(transforms) != 1:
            raise ValueError('an int num_views needs exactly one pipeline')
        counts = [num_views]
    else:
        counts = [int(n) for n in num_views]
        if len(counts) != len(transforms):
            raise ValueError(f'num_views {counts} does not match {len(transforms)} pipelines')
    if not transforms or min(counts) < 1:
        raise ValueError('at least one pipeline and one view per pipeline are needed')
    return counts, [list(t) for t in transforms]
