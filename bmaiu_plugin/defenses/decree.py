"""DECREE (Feng et al., CVPR 2023; github.com/GiantSeaweed/DECREE): self-supervised trigger
inversion on an encoder, and its PL1-norm.

:func:`decree_invert` optimises a mask and pattern, stamped in pixel space, so that the encoder's
features of a clean shadow set collapse onto one direction (mean pairwise cosine >= ``thres``)
under an adaptive L1 penalty on the mask (Neural-Cleanse lambda schedule).  The PL1-norm is the
smallest successful mask L1 (over 3 channels) as a share of the input size (:func:`pl1_norm`): a
small PL1 indicates a trojaned encoder.  The evaluator reports it for probed encoders
(:func:`~bmaiu_plugin.evaluation.diagnostics.pl1_report`, the probe loop's ``pl1``).
"""
import copy
import math
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..models.features import mean_pairwise_cosine, pool_features
from ..utils.data import eval_mode
from ..utils.device import module_device
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number

__all__ = ['decree_invert', 'pl1_norm', 'mean_pairwise_cosine']

_EPS = 1e-7  # tanh(w) / (2 - eps) + 0.5 stays inside (0, 1) in exact arithmetic


def pl1_norm(l1: float, height: int, width: int, channels: int = 3) -> float:
    """The PL1-norm: a mask L1 norm (over the replicated channels) as a share of the input size.

    Args:
        l1 (float): ``||m||_1`` of the mask replicated over ``channels`` (DECREE's ``reg_best``).
        height (int): Image height.
        width (int): Image width.
        channels (int): Channels the mask is replicated over. Defaults to 3.

    Returns:
        float: ``l1 / (channels * height * width)``, in [0, 1] for a mask in [0, 1].
    """
    if min(int(height), int(width), int(channels)) <= 0:
        raise ConfigValueError(
            f'pl1_norm needs positive sizes, got channels={channels}, height={height}, '
            f'width={width}')
    return float(l1) / (int(channels) * int(height) * int(width))


def _to_tanh_space(v: torch.Tensor) -> torch.Tensor:
    """Inverse of ``tanh(w) / (2 - eps) + 0.5`` for ``v`` in [0, 1]."""
    return torch.atanh(((v - 0.5) * (2 - _EPS)).clamp(-1 + 1e-6, 1 - 1e-6))


def _from_tanh_space(w: torch.Tensor) -> torch.Tensor:
    # clipped as the original: in float32 a saturated tanh can land a hair outside [0, 1]
    return (torch.tanh(w) / (2 - _EPS) + 0.5).clamp(0, 1)


def _lr_at(epoch: int, lr: float, milestones: Sequence[Tuple[int, float]]) -> float:
    out = lr
    for start, value in sorted(milestones):
        if epoch >= start:
            out = value
    return out


def decree_invert(encoder: nn.Module,
                  images: torch.Tensor,
                  normalizer: Optional[Callable[[torch.Tensor], torch.Tensor]],
                  *,
                  epochs: int = 1000,
                  batch_size: int = 128,
                  lr: float = 0.5,
                  lr_milestones: Sequence[Tuple[int, float]] = ((30, 0.1), (50, 0.05)),
                  thres: float = 0.99,
                  lam_init: float = 1e-3,
                  lam_min: float = 1e-5,
                  lam_max: float = 1e5,
                  lam_patience: int = 5,
                  lam_reset_patience: int = 10,
                  early_stop_patience: Optional[int] = 10,
                  max_steps: Optional[int] = None,
                  seed: int = 0,
                  device: Optional[Union[str, torch.device]] = None,
                  feature_fn: Callable[[object], torch.Tensor] = pool_features,
                  logger: Optional[Callable[[str], None]] = None) -> Dict[str, object]:
    """Invert a collapse trigger of ``encoder`` with DECREE and report its (P)L1 norm.

    The encoder is frozen: it is put in ``eval()`` for the run (its previous mode is restored
    afterwards) and gradients are taken with respect to the mask and pattern only, so no
    ``.grad`` is written into the encoder. Everything is batched; there is no per-sample loop.

    Args:
        encoder (nn.Module): The suspect encoder, already on ``device``. Its output (a tensor or
            a tuple of stage outputs) is turned into ``(B, D)`` features by ``feature_fn``.
        images (Tensor): ``(N, 3, H, W)`` clean shadow images, uint8 or float in [0, 255],
            ``N >= 2``. They are moved to ``device`` one batch at a time.
        normalizer (callable, optional): Maps 0-255 pixel images to the encoder's input (e.g.
            :class:`~bmaiu_plugin.evaluation.probe.PixelNormalizer`). ``None``: the encoder takes
            0-255 pixels directly.
        epochs (int): Maximum number of passes over ``images`` (the original: 1000).
        batch_size (int): Images per step (the original: 128, 256 in its argparse). A last batch
            of a single image is dropped (a pairwise cosine needs two).
        lr (float): Adam learning rate before the first milestone (the original ``run()``: 0.5).
        lr_milestones (Sequence[tuple[int, float]]): ``(epoch, lr)`` pairs: from that epoch on
            the learning rate is that value. The CIFAR/STL schedule is ``((30, 0.1), (50, 0.05))``;
            ImageNet/CLIP used ``((200, 0.1), (500, 0.05))``.
        thres (float): A step succeeds when the batch mean pairwise cosine is ``>= thres``.
        lam_init (float): Initial weight of the L1 term, and the value it is reset to.
        lam_min (float): Below it the L1 term is off; 1e-5 for CIFAR/STL, 1e-7 for ImageNet/CLIP.
        lam_max (float): ``lam`` is only multiplied while below this value.
        lam_patience (int): ``lam`` is multiplied by 5 after more than this many consecutive
            successful steps and divided by 5 after more than this many failed ones.
        lam_reset_patience (int): When ``lam < lam_min``, more than this many consecutive
            successful steps reset ``lam`` to ``lam_init``.
        early_stop_patience (int, optional): Stop after an epoch whose mean cosine is above
            ``thres`` when the best L1 has not improved for more than this many epochs
            (the original: 10 for CIFAR, 35 for ImageNet/CLIP). ``None`` disables it.
        max_steps (int, optional): Hard cap on optimizer steps (for tests and quick checks).
        seed (int): Seed of the random mask/pattern initialisation and of the batch order.
        device (str | torch.device, optional): Where to optimise; defaults to the encoder's
            device (CPU for an encoder without parameters).
        feature_fn (callable): Encoder output -> ``(B, D)`` features; defaults to
            :func:`~bmaiu_plugin.evaluation.probe.pool_features` (global average pooling).
        logger (callable, optional): Called with one progress line per epoch.

    Returns:
        dict: With keys

        * ``mask`` (Tensor ``(H, W)``, CPU float, in [0, 1]): the best mask (the one with the
          smallest L1 among successful steps; the last mask if no step succeeded);
        * ``pattern`` (Tensor ``(3, H, W)``, CPU float, in [0, 255]): its pattern;
        * ``l1`` (float): its ``||m||_1`` over the replicated channels, ``3 * mask.sum()``;
          ``3 * H * W`` (the whole image) if no step succeeded;
        * ``pl1`` (float): ``l1 / (3 * H * W)`` (1.0 if no step succeeded);
        * ``found`` (bool): whether any step reached ``thres``;
        * ``mean_cos`` (float): mean pairwise cosine of the features of *all* ``images``
          stamped with the returned trigger;
        * ``clean_cos`` (float): the same on the clean images;
        * ``steps``, ``epochs`` (int): optimizer steps and epochs run; ``lam`` (float): final
          lambda.

    Raises:
        ConfigValueError: Bad shapes or settings.
    """
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
        raise ConfigValueError(
            'DECREE needs images as a (N, 3, H, W) tensor of 0-255 pixels, got '
            f'{tuple(images.shape) if torch.is_tensor(images) else type(images).__name__}')
    n, c, h, w = images.shape
    if n < 2:
        raise ConfigValueError(f'DECREE needs at least 2 images, got {n}')
    check_number('DECREE batch_size', batch_size, 2, integer=True)
    check_number('DECREE epochs', epochs, 1, integer=True)
    check_number('DECREE max_steps', max_steps, 1, integer=True, optional=True)
    check_number('DECREE thres', thres, 0, 1, inclusive=(False, True))
    for name, v in dict(lr=lr, lam_init=lam_init, lam_min=lam_min, lam_max=lam_max).items():
        check_number(f'DECREE {name}', v, 0, inclusive=(False, True))
    batch_size = min(int(batch_size), n)
    device = module_device(encoder, device)
    if isinstance(normalizer, nn.Module):
        normalizer = copy.deepcopy(normalizer).to(device)
    norm = normalizer if normalizer is not None else (lambda t: t)

    def features(pix: torch.Tensor) -> torch.Tensor:
        return feature_fn(encoder(norm(pix)))

    g = torch.Generator().manual_seed(int(seed))
    # 'rand' init of the original: uniform mask in (0, 1) and uniform pattern in (0, 255)
    mask_t = _to_tanh_space(torch.rand(h, w, generator=g)).to(device).requires_grad_(True)
    pattern_t = _to_tanh_space(torch.rand(c, h, w, generator=g)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([mask_t, pattern_t], lr=float(lr), betas=(0.5, 0.9))

    def trigger() -> Tuple[torch.Tensor, torch.Tensor]:
        return _from_tanh_space(mask_t), 255. * _from_tanh_space(pattern_t)

    def stamp(x: torch.Tensor, m: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return ((1 - m) * x + m * p).clamp(0, 255)

    lam = float(lam_init)
    succ_cnt = fail_cnt = 0
    best_l1, best_mask, best_pattern = math.inf, None, None
    no_improve, step, epoch = 0, 0, 0
    stop = False
    with eval_mode(encoder):
        for epoch in range(int(epochs)):
            for group in opt.param_groups:
                group['lr'] = _lr_at(epoch, float(lr), lr_milestones)
            perm = torch.randperm(n, generator=g)
            best_before = best_l1
            cos_sum, cos_cnt = 0., 0
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                if idx.numel() < 2:
                    continue
                x = images[idx].to(device, non_blocking=True).float()
                m, p = trigger()
                cos = mean_pairwise_cosine(features(stamp(x, m, p)))
                l1 = c * m.sum()  # L1 of the mask replicated over the channels
                loss = -cos + lam * l1
                grads = torch.autograd.grad(loss, [mask_t, pattern_t])
                cos_v, l1_v = float(cos.detach()), float(l1.detach())
                success = cos_v >= thres
                if success and l1_v < best_l1:
                    best_l1 = l1_v
                    best_mask, best_pattern = m.detach().clone(), p.detach().clone()
                opt.zero_grad(set_to_none=True)
                mask_t.grad, pattern_t.grad = grads
                opt.step()
                step += 1
                cos_sum, cos_cnt = cos_sum + cos_v, cos_cnt + 1
                # lambda schedule
                if success:
                    succ_cnt, fail_cnt = succ_cnt + 1, 0
                else:
                    succ_cnt, fail_cnt = 0, fail_cnt + 1
                if lam < lam_min:
                    if succ_cnt > lam_reset_patience:
                        lam, succ_cnt = float(lam_init), 0
                elif succ_cnt > lam_patience and lam < lam_max:
                    lam, succ_cnt = lam * 5, 0
                elif fail_cnt > lam_patience and lam >= lam_min:
                    lam, fail_cnt = lam / 5, 0
                if max_steps is not None and step >= int(max_steps):
                    stop = True
                    break
            avg_cos = cos_sum / max(cos_cnt, 1)
            no_improve = 0 if best_l1 < best_before else no_improve + 1
            if logger is not None:
                logger(f'DECREE epoch {epoch}: mean cos {avg_cos:.4f}, lam {lam:.2e}, '
                       f'best L1 {best_l1:.1f}')
            if stop or (early_stop_patience is not None and avg_cos > thres
                        and no_improve > int(early_stop_patience)):
                break

        found = best_mask is not None
        if not found:
            best_mask, best_pattern = (t.detach().clone() for t in trigger())
            best_l1 = float(c * h * w)
        with torch.no_grad():
            trig_feats, clean_feats = [], []
            for i in range(0, n, batch_size):
                x = images[i:i + batch_size].to(device).float()
                trig_feats.append(features(stamp(x, best_mask, best_pattern)).float())
                clean_feats.append(features(x).float())
            mean_cos = float(mean_pairwise_cosine(torch.cat(trig_feats)))
            clean_cos = float(mean_pairwise_cosine(torch.cat(clean_feats)))

    return dict(mask=best_mask.cpu(), pattern=best_pattern.cpu(), l1=float(best_l1),
                pl1=pl1_norm(best_l1, h, w, c), found=found, mean_cos=mean_cos,
                clean_cos=clean_cos, steps=step, epochs=epoch + 1, lam=lam)
