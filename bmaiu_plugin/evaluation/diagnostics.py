"""Diagnostics the evaluator computes from what a model exposes (``probe_encoders()``).

* :func:`implant_diagnostics`: BTS / CCS of an implanting defense's stage 1 (BMAIU), from the
  ``suspect`` and ``implanted`` encoders with the defense's own trigger and reference set.
* :func:`trigger_shift`: how far a defense's own target-less triggers (SSL-Cleanse's synthesized
  ones) still move each encoder's features.
* :func:`pl1_report`: DECREE's PL1-norm (Feng et al., CVPR 2023; github.com/GiantSeaweed/DECREE)
  of probed encoders on one class-stratified clean shadow set (:func:`shadow_images`), as the
  probe loop's ``pl1=dict(...)`` (:func:`check_pl1_cfg`) asks.
"""
import time
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger

from ..defenses.decree import decree_invert
from ..models.finetune_base import cosine
from ..utils.data import encode_batched, eval_mode
from ..utils.device import module_device
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number, clip

#: ``decree_invert`` settings a ``pl1=dict(...)`` may hold, besides ``enable``, ``shadow_ratio``
#: and ``encoders``.
DECREE_KEYS = ('epochs', 'batch_size', 'lr', 'lr_milestones', 'thres', 'lam_init', 'lam_min',
               'lam_max', 'lam_patience', 'lam_reset_patience', 'early_stop_patience',
               'max_steps', 'seed')
#: Test images used by :func:`implant_diagnostics` (at most).
IMPLANT_IMAGES = 2000
#: Test images used by :func:`trigger_shift` (at most).
SHIFT_IMAGES = 1000
#: Images per forward pass of the diagnostics.
BATCH = 256


def check_pl1_cfg(cfg: Optional[dict], name: str = 'pl1') -> Optional[dict]:
    """Validate the probe loop's ``pl1=dict(...)``; ``None`` or ``enable=False`` (off) give
    ``None``.

    Keys: ``enable`` (default True; lets a config carry the settings switched off, for
    ``--cfg-options test_cfg.pl1.enable=True``), ``shadow_ratio`` (share of each test class used
    as DECREE's clean shadow set, in (0, 1]; the original: 0.1), ``encoders`` (names of probed
    encoders to run DECREE on; default: every probed encoder) and any of :data:`DECREE_KEYS`
    (:func:`~bmaiu_plugin.defenses.decree.decree_invert`'s budget and schedule).

    Args:
        cfg (dict, optional): The settings.
        name (str): Their config path, for messages.

    Returns:
        dict | None: The settings with ``shadow_ratio`` filled in, without ``enable``.
    """
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise ConfigValueError(f'{name} must be a dict of DECREE settings or None, got '
                               f'{clip(cfg)}')
    cfg = dict(cfg)
    if not cfg.pop('enable', True):
        return None
    unknown = sorted(set(cfg) - set(DECREE_KEYS) - {'shadow_ratio', 'encoders'})
    if unknown:
        raise ConfigValueError(f'unknown {name} setting(s) {unknown}; allowed: enable, '
                               f'shadow_ratio, encoders, {", ".join(DECREE_KEYS)}')
    check_number(f'{name} shadow_ratio', cfg.setdefault('shadow_ratio', 0.1), 0, 1,
                 inclusive=(False, True))
    for key in ('epochs', 'batch_size'):
        if key in cfg:
            check_number(f'{name} {key}', cfg[key], 2 if key == 'batch_size' else 1,
                         integer=True)
    check_number(f'{name} max_steps', cfg.get('max_steps'), 1, integer=True, optional=True)
    for key in ('lr', 'lam_init', 'lam_min', 'lam_max'):
        if key in cfg:
            check_number(f'{name} {key}', cfg[key], 0, inclusive=(False, True))
    if 'thres' in cfg:
        check_number(f'{name} thres', cfg['thres'], 0, 1, inclusive=(False, True))
    if 'lr_milestones' in cfg:
        cfg['lr_milestones'] = tuple((int(e), float(v)) for e, v in cfg['lr_milestones'])
    if 'encoders' in cfg:
        cfg['encoders'] = check_encoder_names(cfg['encoders'], f'{name} encoders')
    return cfg


def check_encoder_names(encs, name: str) -> List[str]:
    """A diagnostic's ``encoders`` setting: a non-empty list of distinct names."""
    if isinstance(encs, str) or not isinstance(encs, (list, tuple)) or not encs or \
            not all(isinstance(e, str) for e in encs) or len(set(encs)) != len(encs):
        raise ConfigValueError(f'{name} must be a non-empty list of distinct encoder names, '
                               f'got {clip(encs)}')
    return list(encs)


def shadow_images(images: torch.Tensor, labels: torch.Tensor, ratio: float,
                  seed: int = 0) -> torch.Tensor:
    """A seeded, class-stratified ``ratio`` of ``images`` (DECREE's clean shadow set).

    Args:
        images (Tensor): ``(N, 3, H, W)`` images.
        labels (Tensor): ``(N,)`` classes (used only to stratify the sample).
        ratio (float): Share of each class to keep (at least one image per class).
        seed (int): Seed of the choice.

    Returns:
        Tensor: The chosen images, in dataset order.
    """
    g = torch.Generator().manual_seed(int(seed))
    keep = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        k = max(1, int(round(ratio * len(idx))))
        keep.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return images[torch.sort(torch.cat(keep)).values]


def _every(n: int, prefix: str):
    """A progress logger that forwards one line in ``n`` to the current MMLogger."""
    count = [0]

    def log(line: str) -> None:
        if count[0] % n == 0:
            MMLogger.get_current_instance().info(prefix + line)
        count[0] += 1
    return log


def pl1_report(encoders: Dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor,
               cfg: dict, normalizer: nn.Module) -> dict:
    """Run DECREE on each encoder with the same shadow set.

    Args:
        encoders (dict[str, nn.Module]): Name -> encoder.
        images (Tensor): The clean test images (pixel space), from which the class-stratified
            shadow set is drawn.
        labels (Tensor): Their classes (for the stratification only).
        cfg (dict): Settings checked by :func:`check_pl1_cfg` (``encoders`` is ignored here).
        normalizer (nn.Module): Pixel space to the encoders' input.

    Returns:
        dict: ``PL1`` (a number for a single encoder named ``'encoder'``, else one per name)
        and ``decree`` (per encoder: ``l1`` = DECREE's mask L1 over 3 channels, ``mask_l1`` =
        the 2-D mask's sum, ``found``, ``mean_cos`` of the stamped shadow set, ``clean_cos``,
        ``steps``, ``epochs``, ``seconds``, ``shadow_images``).
    """
    cfg = {k: v for k, v in cfg.items() if k != 'encoders'}
    ratio = cfg.pop('shadow_ratio')
    shadow = shadow_images(images, labels, ratio, int(cfg.get('seed', 0)))
    pl1, details = {}, {}
    for name, enc in encoders.items():
        t0 = time.perf_counter()
        with torch.enable_grad():
            res = decree_invert(enc, shadow, normalizer, device=module_device(enc),
                                logger=_every(20, f'DECREE [{name}] '), **cfg)
        pl1[name] = round(res['pl1'], 5)
        details[name] = dict(l1=round(res['l1'], 2), mask_l1=round(res['l1'] / 3, 2),
                             found=bool(res['found']), mean_cos=round(res['mean_cos'], 4),
                             clean_cos=round(res['clean_cos'], 4), steps=res['steps'],
                             epochs=res['epochs'], seconds=round(time.perf_counter() - t0, 1),
                             shadow_images=len(shadow))
    if list(encoders) == ['encoder']:
        return dict(PL1=pl1['encoder'], decree=details['encoder'])
    return dict(PL1=pl1, decree=details)


def _features(encoder: nn.Module, normalizer: nn.Module, imgs: torch.Tensor) -> torch.Tensor:
    return encode_batched(encoder, normalizer, imgs, BATCH, device=imgs.device, to_cpu=False)


def _stamp(trigger, imgs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return trigger.stamp_batched(imgs, generator, BATCH)


@torch.no_grad()
def implant_diagnostics(specs: Dict[str, dict], images: torch.Tensor, normalizer: nn.Module,
                        seed: int = 0) -> dict:
    """BTS and CCS of an implanting stage, with the baselines that make them readable.

    Computed when ``specs`` (a model's ``probe_encoders()``) has ``suspect`` (f0) and
    ``implanted`` (f1) and the ``implanted`` entry has the defense's own ``triggers`` (the
    first one's ``trigger`` is ``e``) and ``reference`` (the reference set R); else ``{}``.

    * ``BTS``: mean cos(f1(x + e), mean f1(R)); ``BTS_clean``: the same for clean x (a BTS rise
      that clean images share is drift, not implantation); ``BTS_gap`` = their difference.
    * ``CCS``: mean cos(f1(x), f0(x)) on clean x.
    * ``trigger_shift_f1`` / ``trigger_shift_f2``: mean cos(f(x + e), f(x)) in f1 / the
      ``defended`` encoder f2 (when there is one besides f1).

    Args:
        specs (dict): ``{name: dict(encoder=..., triggers=[...], reference=...)}``.
        images (Tensor): Clean test images (pixel space); the first :data:`IMPLANT_IMAGES` are
            used.
        normalizer (nn.Module): Pixel space to the encoders' input.
        seed (int): Seed of the trigger positions' generator (the model's ``seed``).

    Returns:
        dict: The values above, rounded to 4 decimals.
    """
    imp = specs.get('implanted')
    if 'suspect' not in specs or not imp or not imp.get('triggers') or \
            imp.get('reference') is None:
        return {}
    f1, f0 = imp['encoder'], specs['suspect']['encoder']
    f2 = (specs.get('defended') or {}).get('encoder')
    dev = module_device(f1)
    norm = normalizer.to(dev)
    gen = torch.Generator(device=dev).manual_seed(int(seed))
    x = images[:IMPLANT_IMAGES].to(dev)
    trig = imp['triggers'][0]['trigger'].to(dev)
    xe = _stamp(trig, x, gen)
    with eval_mode(f1), eval_mode(f0):
        r1 = _features(f1, norm, imp['reference'].to(dev)).mean(0, keepdim=True)
        f1_x, f1_xe, f0_x = _features(f1, norm, x), _features(f1, norm, xe), \
            _features(f0, norm, x)
    out = dict(BTS=cosine(f1_xe, r1).mean().item(), BTS_clean=cosine(f1_x, r1).mean().item(),
               CCS=cosine(f1_x, f0_x).mean().item(),
               trigger_shift_f1=cosine(f1_xe, f1_x).mean().item())
    out['BTS_gap'] = out['BTS'] - out['BTS_clean']
    if f2 is not None and f2 is not f1:
        with eval_mode(f2):
            out['trigger_shift_f2'] = cosine(_features(f2, norm, xe),
                                             _features(f2, norm, x)).mean().item()
    return {k: round(v, 4) for k, v in out.items()}


@torch.no_grad()
def trigger_shift(specs: Dict[str, dict], images: torch.Tensor, normalizer: nn.Module,
                  seed: int = 0) -> dict:
    """How far each encoder's own target-less triggers move its features.

    A trigger of a ``probe_encoders()`` entry with ``target=None`` has no target class (e.g.
    SSL-Cleanse's synthesized triggers): the probe does not score it; instead this reports
    ``<trigger name>_shift_<encoder name>`` = mean cos(f(t(x)), f(x)) over the first
    :data:`SHIFT_IMAGES` test images (close to 1 once a defense has unlearned the trigger).
    Every entry's stamping starts from the same seeded generator, so encoders sharing a trigger
    see the same stamped images.

    Args:
        specs (dict): ``{name: dict(encoder=..., triggers=[...])}``.
        images (Tensor): Clean test images (pixel space).
        normalizer (nn.Module): Pixel space to the encoders' input.
        seed (int): Seed of the stamping generator (the model's ``seed``).
    """
    out = {}
    for enc_name, spec in specs.items():
        own = [t for t in spec.get('triggers') or [] if t.get('target', -1) is None]
        if not own:
            continue
        enc = spec['encoder']
        dev = module_device(enc)
        norm = normalizer.to(dev)
        x = images[:SHIFT_IMAGES].to(dev)
        with eval_mode(enc):
            clean = _features(enc, norm, x)
            for t in own:
                gen = torch.Generator(device=dev).manual_seed(int(seed))
                feats = _features(enc, norm, _stamp(t['trigger'], x, gen))
                out[f"{t['name']}_shift_{enc_name}"] = round(
                    cosine(feats, clean).mean().item(), 4)
    return out
