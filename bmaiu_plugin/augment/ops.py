"""Batched image ops with per-sample random parameters, for SSL views made on the device.

Every op works on a whole ``(B, C, H, W)`` batch (uint8 or float in ``[0, 255]``, any device)
in a fixed number of tensor ops: no Python loop over samples.  Random ops draw their per-sample
parameters from a ``torch.Generator`` (on the generator's device, then moved to the images'), so a
seeded generator reproduces a batch exactly.  uint8 inputs come back as uint8 (rounded); float
inputs stay float (clamped to ``[0, 255]`` after each photometric op, as the uint8 CPU path is
after each transform).

Each random op has a ``sample_*`` function (the parameters, testable on their own) and an
``apply``-style function taking those parameters, so the two can also be used separately.
The semantics follow mmpretrain's/mmcv's CPU transforms (see :mod:`bmaiu_plugin.augment.pipeline`
for the differences, all of them sub-level rounding or documented choices).
"""
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

#: ITU-R 601-2 luma weights in RGB order (PIL's ``convert('L')``, mmpretrain grayscale configs).
LUMA_RGB = (0.299, 0.587, 0.114)


# ------------------------------------------------------------------------------ helpers
def _float(imgs: torch.Tensor) -> torch.Tensor:
    return imgs if imgs.is_floating_point() else imgs.float()


def _restore(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``out`` in ``like``'s dtype (uint8: rounded and clamped)."""
    if like.dtype == torch.uint8:
        return out.round().clamp_(0, 255).to(torch.uint8)
    return out.to(like.dtype)


def _rand(shape, generator: Optional[torch.Generator], device) -> torch.Tensor:
    """``torch.rand`` on the generator's device, moved to ``device``."""
    gdev = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gdev).to(device)


def uniform(n: int, low: float, high: float, generator: Optional[torch.Generator] = None,
            device=None) -> torch.Tensor:
    """``n`` floats uniform in ``[low, high)``."""
    return low + (high - low) * _rand((n, ), generator, device)


def bernoulli(n: int, p: float, generator: Optional[torch.Generator] = None,
              device=None) -> torch.Tensor:
    """``n`` booleans, each True with probability ``p``."""
    return _rand((n, ), generator, device) < p


def _bcast(v: torch.Tensor) -> torch.Tensor:
    """A per-sample ``(B,)`` value as ``(B, 1, 1, 1)``."""
    return v.reshape(-1, 1, 1, 1)


def _select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample ``a if mask else b``."""
    return torch.where(_bcast(mask), a, b)


def luminance(imgs: torch.Tensor, weights: Sequence[float] = LUMA_RGB) -> torch.Tensor:
    """``(B, 1, H, W)`` weighted channel sum (weights normalized to sum 1)."""
    x = _float(imgs)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    return (x * (w / w.sum()).view(1, -1, 1, 1)).sum(1, keepdim=True)


# ------------------------------------------------------------------- random resized crop
def sample_crop_boxes(n: int, height: int, width: int,
                      crop_ratio_range: Tuple[float, float] = (0.08, 1.),
                      aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                      max_attempts: int = 10, generator: Optional[torch.Generator] = None,
                      device=None) -> torch.Tensor:
    """Per-sample crop boxes as mmpretrain's ``RandomResizedCrop`` draws them.

    Each sample gets ``max_attempts`` candidates at once (area fraction uniform in
    ``crop_ratio_range``, log aspect ratio uniform in ``log(aspect_ratio_range)``, integer
    sides rounded); the first candidate that fits is taken, with an integer offset uniform over
    the free range.  Samples without a fitting candidate get mmpretrain's fallback central crop.

    Args:
        n (int): Number of boxes.
        height (int): Image height.
        width (int): Image width.
        crop_ratio_range (tuple[float, float]): Range of the crop area over the image area.
        aspect_ratio_range (tuple[float, float]): Range of the crop's width / height.
        max_attempts (int): Candidates per sample before the fallback.
        generator (torch.Generator, optional): Source of randomness.
        device (torch.device, optional): Device of the result.

    Returns:
        Tensor: ``(n, 4)`` long boxes ``[top, left, crop_h, crop_w]``.
    """
    if device is None:
        device = generator.device if generator is not None else 'cpu'
    lo, hi = (float(v) for v in crop_ratio_range)
    lr = (math.log(aspect_ratio_range[0]), math.log(aspect_ratio_range[1]))
    k = max(int(max_attempts), 1)
    u = _rand((n, k, 4), generator, device).double()
    area = height * width * (lo + (hi - lo) * u[..., 0])
    ratio = torch.exp(lr[0] + (lr[1] - lr[0]) * u[..., 1])
    cw = torch.round(torch.sqrt(area * ratio))  # round half to even, as Python's round()
    ch = torch.round(torch.sqrt(area / ratio))
    ok = (cw > 0) & (cw <= width) & (ch > 0) & (ch <= height)
    if int(max_attempts) == 0:
        ok = torch.zeros_like(ok)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)  # the first fitting attempt
    pick = lambda t: t.gather(1, first).squeeze(1)  # noqa: E731
    cw, ch, uy, ux = pick(cw), pick(ch), pick(u[..., 2]), pick(u[..., 3])
    top = torch.minimum(torch.floor(uy * (height - ch + 1)), height - ch)
    left = torch.minimum(torch.floor(ux * (width - cw + 1)), width - cw)
    # fallback: mmpretrain's central crop at the nearest allowed aspect ratio
    in_ratio = width / height
    if in_ratio < min(aspect_ratio_range):
        fw, fh = width, int(round(width / min(aspect_ratio_range)))
    elif in_ratio > max(aspect_ratio_range):
        fw, fh = int(round(height * max(aspect_ratio_range))), height
    else:
        fw, fh = width, height
    fb = torch.tensor([(height - fh) // 2, (width - fw) // 2, fh, fw], dtype=torch.float64,
                      device=device)
    boxes = torch.stack([top, left, ch, cw], 1)
    boxes = torch.where(ok.any(1, keepdim=True), boxes, fb.expand(n, 4))
    return boxes.long()


def resized_crop(imgs: torch.Tensor, boxes: torch.Tensor, size: Tuple[int, int],
                 flip: Optional[torch.Tensor] = None,
                 interpolation: str = 'bilinear') -> torch.Tensor:
    """Crop each image to its box and resize it to ``size``, in one ``grid_sample`` call.

    Output pixel centres map linearly onto the box (the half-pixel convention of PIL/cv2
    resizing) and sampling coordinates are clamped to the box, so the result equals cropping
    first and resizing the crop with edge replication.  ``flip`` mirrors the sampling grid
    horizontally, which fuses a horizontal flip into the same resampling.

    Args:
        imgs (Tensor): ``(B, C, H, W)`` images.
        boxes (Tensor): ``(B, 4)`` boxes ``[top, left, crop_h, crop_w]`` in pixels.
        size (tuple[int, int]): Output ``(height, width)``.
        flip (Tensor, optional): ``(B,)`` bool, flip these samples horizontally.
        interpolation (str): ``'bilinear'``, ``'bicubic'`` or ``'nearest'``.

    Returns:
        Tensor: ``(B, C, size[0], size[1])``, ``imgs``' dtype.
    """
    b, c, h, w = imgs.shape
    oh, ow = int(size[0]), int(size[1])
    x = _float(imgs)
    top, left, bh, bw = boxes.to(x.device, x.dtype).unbind(1)

    def axis(start, length, n, side):  # (B, n) normalized sampling coordinates
        t = (torch.arange(n, device=x.device, dtype=x.dtype) + 0.5) / n
        p = start[:, None] + t[None] * length[:, None] - 0.5  # pixel-index coordinates
        p = torch.maximum(torch.minimum(p, (start + length - 1)[:, None]), start[:, None])
        return (2 * p + 1) / side - 1

    gx, gy = axis(left, bw, ow, w), axis(top, bh, oh, h)
    if flip is not None:
        gx = torch.where(flip.to(x.device)[:, None], gx.flip(1), gx)
    grid = torch.stack([gx[:, None, :].expand(b, oh, ow), gy[:, :, None].expand(b, oh, ow)], -1)
    out = F.grid_sample(x, grid, mode=interpolation, padding_mode='border', align_corners=False)
    if interpolation == 'bicubic':
        out = out.clamp(0, 255)
    return _restore(out, imgs)


def random_resized_crop(imgs: torch.Tensor, size: Optional[Tuple[int, int]] = None,
                        crop_ratio_range: Tuple[float, float] = (0.08, 1.),
                        aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                        max_attempts: int = 10, interpolation: str = 'bilinear',
                        flip_prob: float = 0., generator: Optional[torch.Generator] = None
                        ) -> torch.Tensor:
    """Random resized crop (and optionally a fused horizontal flip) of a whole batch.

    Args:
        imgs (Tensor): ``(B, C, H, W)`` images.
        size (tuple[int, int], optional): Output size; the input size by default.
        crop_ratio_range, aspect_ratio_range, max_attempts: See :func:`sample_crop_boxes`.
        interpolation (str): See :func:`resized_crop`.
        flip_prob (float): Probability of a horizontal flip, applied in the same resampling.
        generator (torch.Generator, optional): Source of randomness.

    Returns:
        Tensor: The crops, ``imgs``' dtype.
    """
    b, _, h, w = imgs.shape
    boxes = sample_crop_boxes(b, h, w, crop_ratio_range, aspect_ratio_range, max_attempts,
                              generator, imgs.device)
    flip = bernoulli(b, flip_prob, generator, imgs.device) if flip_prob > 0 else None
    return resized_crop(imgs, boxes, size or (h, w), flip, interpolation)


# ------------------------------------------------------------------------------- flip
def hflip(imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flip the samples where ``mask`` (``(B,)`` bool) horizontally."""
    return _select(mask.to(imgs.device), imgs.flip(-1), imgs)


def random_hflip(imgs: torch.Tensor, prob: float = 0.5,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Horizontal flip of each sample with probability ``prob``."""
    return hflip(imgs, bernoulli(imgs.shape[0], prob, generator, imgs.device))


# ------------------------------------------------------------------------ colour ops
def adjust_brightness(imgs: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with black: ``x * f`` (PIL ``ImageEnhance.Brightness``), per-sample ``f``."""
    return _restore((_float(imgs) * _bcast(factor)).clamp_(0, 255), imgs)


def adjust_contrast(imgs: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean luminance (PIL ``ImageEnhance.Contrast``), per-sample ``f``."""
    x = _float(imgs)
    mean = luminance(x).mean((1, 2, 3), keepdim=True)
    f = _bcast(factor).to(x.dtype)
    return _restore((f * x + (1 - f) * mean).clamp_(0, 255), imgs)


def adjust_saturation(imgs: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the per-pixel luminance (PIL ``ImageEnhance.Color``), per-sample ``f``."""
    x = _float(imgs)
    f = _bcast(factor).to(x.dtype)
    return _restore((f * x + (1 - f) * luminance(x)).clamp_(0, 255), imgs)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in ``[0, 1]`` to HSV, all three channels in ``[0, 1]``."""
    r, g, b = rgb.unbind(1)
    maxc, argmax = rgb.max(1)
    minc = rgb.min(1).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    # hue sector by the channel holding the maximum (ties: r before g before b)
    h = torch.where(argmax == 0, (g - b) / safe,
                    torch.where(argmax == 1, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, torch.remainder(h / 6, 1.), torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)),
                    torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`: channel ``n`` (5, 3, 1 for R, G, B) is
    ``v - v s clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``."""
    h, s, v = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5., 3., 1.], dtype=hsv.dtype, device=hsv.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6 * h, 6)
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def adjust_hue(imgs: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue by ``shift`` (per sample, in turns: 0.5 = opposite colours)."""
    x = _float(imgs)
    hsv = rgb_to_hsv(x / 255.)
    h = torch.remainder(hsv[:, :1] + _bcast(shift).to(x.dtype), 1.)
    out = hsv_to_rgb(torch.cat([h, hsv[:, 1:]], 1)) * 255.
    return _restore(out.clamp_(0, 255), imgs)


def _factor_range(v, name: str, center: float = 1., bound=(0., float('inf'))):
    """``v`` or ``(lo, hi)`` to ``(lo, hi)`` (None when it is the identity)."""
    if isinstance(v, (int, float)):
        if v < 0:
            raise ValueError(f'{name} must be non-negative, got {v}')
        v = (center - float(v), center + float(v))
    lo, hi = max(float(v[0]), bound[0]), min(float(v[1]), bound[1])
    if lo > hi:
        raise ValueError(f'{name} range must satisfy min <= max, got {v}')
    return None if lo == hi == center else (lo, hi)


def sample_color_jitter(n: int, brightness=0., contrast=0., saturation=0., hue=0.,
                        prob: float = 1., generator: Optional[torch.Generator] = None,
                        device=None) -> dict:
    """Per-sample colour-jitter parameters (mmpretrain ``ColorJitter`` in ``RandomApply``).

    Returns:
        dict: ``apply`` ``(n,)`` bool (the ``RandomApply`` draw), ``order`` ``(n, 4)`` long (a
        random permutation of brightness 0, contrast 1, saturation 2, hue 3 per sample), and
        ``brightness``/``contrast``/``saturation``/``hue`` ``(n,)`` factors (None when off).
    """
    ranges = dict(brightness=_factor_range(brightness, 'brightness'),
                  contrast=_factor_range(contrast, 'contrast'),
                  saturation=_factor_range(saturation, 'saturation'),
                  hue=_factor_range(hue, 'hue', 0., (-0.5, 0.5)))
    u = _rand((n, 9), generator, device)
    out = dict(apply=u[:, 0] < prob, order=u[:, 1:5].argsort(1))
    for i, (key, r) in enumerate(ranges.items()):
        out[key] = None if r is None else r[0] + (r[1] - r[0]) * u[:, 5 + i]
    return out


_JITTER_OPS = (('brightness', adjust_brightness), ('contrast', adjust_contrast),
               ('saturation', adjust_saturation), ('hue', adjust_hue))


def apply_color_jitter(imgs: torch.Tensor, params: dict, random_order: bool = True
                       ) -> torch.Tensor:
    """Apply :func:`sample_color_jitter` parameters to a batch.

    With ``random_order`` each sample gets its own op order: at each of the four positions
    every enabled op is computed for the whole batch and kept where it is that sample's op at
    that position (static shapes, no host sync; 4x the arithmetic of one fixed order).
    """
    x = _float(imgs)
    apply = params['apply'].to(x.device)
    if random_order:
        order = params['order'].to(x.device)
        for pos in range(4):
            for j, (key, fn) in enumerate(_JITTER_OPS):
                if params[key] is not None:
                    x = _select(apply & (order[:, pos] == j), fn(x, params[key].to(x.device)), x)
    else:
        for key, fn in _JITTER_OPS:
            if params[key] is not None:
                x = _select(apply, fn(x, params[key].to(x.device)), x)
    return _restore(x, imgs)


def color_jitter(imgs: torch.Tensor, brightness=0., contrast=0., saturation=0., hue=0.,
                 prob: float = 1., random_order: bool = True,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Colour jitter with per-sample factors, applied to each sample with probability ``prob``.

    Args:
        imgs (Tensor): ``(B, 3, H, W)`` RGB images.
        brightness, contrast, saturation (float | tuple): ``f`` uniform in
            ``[max(0, 1 - v), 1 + v]`` (or the given range).
        hue (float | tuple): Shift uniform in ``[-v, v]`` turns (or the given range).
        prob (float): Probability of jittering a sample at all (mmpretrain's ``RandomApply``).
        random_order (bool): A random op order per sample (mmpretrain / torchvision).
        generator (torch.Generator, optional): Source of randomness.
    """
    params = sample_color_jitter(imgs.shape[0], brightness, contrast, saturation, hue, prob,
                                 generator, imgs.device)
    return apply_color_jitter(imgs, params, random_order)


# ----------------------------------------------------------------------- grayscale
def grayscale(imgs: torch.Tensor, mask: torch.Tensor,
              channel_weights: Sequence[float] = LUMA_RGB) -> torch.Tensor:
    """Replace every channel of the masked samples by their weighted channel sum."""
    x = _float(imgs)
    gray = luminance(x, channel_weights).expand_as(x)
    return _restore(_select(mask.to(x.device), gray, x), imgs)


def random_grayscale(imgs: torch.Tensor, prob: float = 0.1,
                     channel_weights: Sequence[float] = LUMA_RGB,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Grayscale (channels kept) with probability ``prob`` per sample."""
    return grayscale(imgs, bernoulli(imgs.shape[0], prob, generator, imgs.device),
                     channel_weights)


# ---------------------------------------------------------------------------- blur
def gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(B, K)`` normalized 1-D Gaussian kernels, one per sigma."""
    half = kernel_size // 2
    t = torch.arange(-half, half + 1, dtype=torch.float32, device=sigma.device)
    k = torch.exp(-0.5 * (t[None] / sigma.float()[:, None].clamp_min(1e-6)) ** 2)
    return k / k.sum(1, keepdim=True)


def default_kernel_size(max_sigma: float) -> int:
    """Odd kernel side covering +-3 sigma."""
    return 2 * int(math.ceil(3 * float(max_sigma))) + 1


def gaussian_blur(imgs: torch.Tensor, sigma: torch.Tensor,
                  kernel_size: Optional[int] = None,
                  mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma: two grouped 1-D convolutions (one group per
    sample and channel), edges replicated.

    Args:
        imgs (Tensor): ``(B, C, H, W)`` images.
        sigma (Tensor): ``(B,)`` standard deviations in pixels.
        kernel_size (int, optional): Odd kernel side; ``+-3 max(sigma)`` by default.
        mask (Tensor, optional): ``(B,)`` bool; unmasked samples are returned unchanged.
    """
    b, c, h, w = imgs.shape
    x = _float(imgs)
    sigma = sigma.to(x.device)
    ks = kernel_size or default_kernel_size(float(sigma.max()))
    if ks % 2 == 0:
        raise ValueError(f'kernel_size must be odd, got {ks}')
    half = ks // 2
    k = gaussian_kernels(sigma, ks).to(x.dtype).repeat_interleave(c, 0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (half, half, half, half), mode='replicate')
    y = F.conv2d(y, k.view(b * c, 1, 1, ks), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, ks, 1), groups=b * c).view(b, c, h, w)
    if mask is not None:
        y = _select(mask.to(x.device), y, x)
    return _restore(y, imgs)


def random_gaussian_blur(imgs: torch.Tensor, sigma_range: Tuple[float, float] = (0.1, 2.),
                         prob: float = 0.5, kernel_size: Optional[int] = None,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Blur each sample with probability ``prob``, sigma uniform in ``sigma_range``.

    The kernel side is fixed by ``sigma_range[1]`` (static shapes across batches).
    """
    b = imgs.shape[0]
    u = _rand((b, 2), generator, imgs.device)
    sigma = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * u[:, 1]
    return gaussian_blur(imgs, sigma, kernel_size or default_kernel_size(sigma_range[1]),
                         mask=u[:, 0] < prob)


# ------------------------------------------------------------------------ solarize
def solarize(imgs: torch.Tensor, mask: torch.Tensor, thr: float = 128.) -> torch.Tensor:
    """Invert (``255 - x``) every pixel ``>= thr`` of the masked samples (mmcv ``solarize``)."""
    m = _bcast(mask.to(imgs.device)) & (imgs >= thr)
    return torch.where(m, 255 - imgs, imgs)


def random_solarize(imgs: torch.Tensor, prob: float = 0.5, thr: float = 128.,
                    generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Solarize each sample with probability ``prob``."""
    return solarize(imgs, bernoulli(imgs.shape[0], prob, generator, imgs.device), thr)
