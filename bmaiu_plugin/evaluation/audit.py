"""Residual-backdoor audit: does an encoder still have a trigger its features collapse on?

Removing a trigger is not removing the backdoor: other inputs may still reach the same latent
target ("Removing the Trigger, Not the Backdoor", arXiv:2603.09772).  The audit inverts
size-bounded triggers on an encoder with a budget of its own, independent of any defense's
(patch patterns of several sizes, searched label-free for the largest feature collapse), and
reports what the strongest one does:

* ``collapse``: the mean pairwise cosine of the triggered test images' features (DECREE's
  signature of a backdoor: triggered images of every class embed alike);
* ``asr``: the linear probe's attack success rate toward the class the triggered images land in
  most (non-target images predicted as that class; the plugin's probe on L2-normalized
  features, trained on the probe split).

A defense removes a backdoor only when the defended encoder's audit is close to a clean
encoder's: both columns are reported next to each other in the pipeline's tables.

Three size-bounded families are inverted: patches at random positions (``patch_sizes``),
patches at fixed places (``window_sizes``: one pattern per window of a grid, searched together;
a trigger implanted at one place fires only there) and masks of a given area with a full-image
pattern (``mask_areas``, off by default: on weak encoders a 100-pixel mask collapses a clean
encoder more than a backdoored one, ``tests/evaluation/test_audit.py``).  The triggers are
bounded by their size on purpose: an unbounded full-image inversion collapses any encoder
(DECREE's mask and pattern after 150 steps, before its L1 pressure shrinks the mask, gave a
collapse of 0.99 and an ASR of 99.9 % on a clean encoder too).  DECREE's measure of a backdoor
is the size of the smallest collapsing trigger, its PL1 (the probe loop's ``pl1``).
"""
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..defenses.search_space import MaskPatternSearch, WindowPatchSearch, search_collapse
from ..defenses.trigger_search import search_patch_pattern
from ..models.features import mean_pairwise_cosine, pool_features
from ..triggers import PatchTrigger
from ..utils.data import encode_batched, eval_mode
from ..utils.device import module_device
from ..utils.errors import ConfigValueError, clip
from ..utils.validate import check_number
from .diagnostics import check_encoder_names
from .probe import percent, train_linear_probe

#: The audit's own budget (``test_cfg.audit``); every key may be overridden.
AUDIT_DEFAULTS = dict(patch_sizes=(4, 10), window_sizes=(10, ), mask_areas=(),
                      search_steps=200, search_lr=0.1, batch_size=128, shadow_ratio=0.1, seed=0)


def check_audit_cfg(cfg: Optional[dict], name: str = 'audit') -> Optional[dict]:
    """The audit settings with defaults filled in; ``None`` or ``enable=False``: off."""
    if cfg is None:
        return None
    if not isinstance(cfg, dict):
        raise ConfigValueError(f'{name} must be a dict of audit settings or None, got {clip(cfg)}')
    cfg = dict(cfg)
    if not cfg.pop('enable', True):
        return None
    unknown = sorted(set(cfg) - set(AUDIT_DEFAULTS) - {'encoders'})
    if unknown:
        raise ConfigValueError(f'unknown {name} setting(s) {unknown}; allowed: enable, encoders, '
                               f'{", ".join(AUDIT_DEFAULTS)}')
    out = {**AUDIT_DEFAULTS, **cfg}
    if 'encoders' in out:
        out['encoders'] = check_encoder_names(out['encoders'], f'{name} encoders')
    for key in ('patch_sizes', 'window_sizes'):
        sizes = out[key]
        if not isinstance(sizes, (list, tuple)):
            raise ConfigValueError(f'{name}.{key} must be a list of patch sides, got '
                                   f'{clip(sizes)}')
        out[key] = tuple(check_number(f'{name}.{key}', s, 1, integer=True) for s in sizes)
    check_number(f'{name}.search_steps', out['search_steps'], 1, integer=True)
    check_number(f'{name}.search_lr', out['search_lr'], 0, inclusive=(False, True))
    check_number(f'{name}.batch_size', out['batch_size'], 2, integer=True)
    check_number(f'{name}.shadow_ratio', out['shadow_ratio'], 0, 1, inclusive=(False, True))
    check_number(f'{name}.seed', out['seed'], integer=True)
    areas = out['mask_areas']
    if not isinstance(areas, (list, tuple)):
        raise ConfigValueError(f'{name}.mask_areas must be a list of mask areas (pixels), got '
                               f'{clip(areas)}')
    out['mask_areas'] = tuple(check_number(f'{name}.mask_areas', a, 0, inclusive=(False, True))
                              for a in areas)
    if not out['patch_sizes'] and not out['window_sizes'] and not out['mask_areas']:
        raise ConfigValueError(f'{name} inverts nothing: give patch_sizes, window_sizes or '
                               'mask_areas')
    return out


def inverted_triggers(encoder: nn.Module, normalizer: nn.Module, shadow: torch.Tensor,
                      cfg: dict) -> Dict[str, Callable]:
    """Triggers inverted on ``encoder`` from clean ``shadow`` images (no labels used).

    Returns:
        dict: ``patch<S>``: per patch size, the ``S x S`` pattern, pasted at a random position
        per image, whose triggered features collapse most (a :class:`PatchTrigger`);
        ``window<S>``: per window size, the ``S x S`` pattern at the fixed place (a window of a
        grid, searched together as a
        :class:`~bmaiu_plugin.defenses.search_space.WindowPatchSearch`) whose triggered
        features collapse most; ``mask<A>``: per mask area, the mask (of any shape and place,
        ``A`` pixels) and full-image pattern they collapse most on (a
        :class:`~bmaiu_plugin.defenses.search_space.MaskPatternSearch`).  Triggers
        ``t(imgs, generator=None)`` on 0-255 images.
    """
    device = module_device(encoder)
    budget = dict(steps=cfg['search_steps'], lr=cfg['search_lr'], batch_size=cfg['batch_size'],
                  seed=cfg['seed'])
    out: Dict[str, Callable] = {}
    for size in cfg['patch_sizes']:
        trig = PatchTrigger(size=size, pattern='random', position='random',
                            seed=cfg['seed'] + size).to(device)
        pattern, _ = search_patch_pattern(encoder, normalizer, shadow, trig, **budget)
        trig.pattern.copy_(pattern.to(trig.pattern))
        out[f'patch{size}'] = trig
    c, h, w = shadow.shape[1:]
    members = {f'window{s}': WindowPatchSearch(s, stride=s, img_size=(h, w), channels=c,
                                               seed=cfg['seed']) for s in cfg['window_sizes']}
    members.update({f'mask{a:g}': MaskPatternSearch(a, img_size=(h, w), channels=c,
                                                    seed=cfg['seed']) for a in cfg['mask_areas']})
    for name, member in members.items():
        member.to(device)
        theta, _ = search_collapse(member, encoder, normalizer, shadow, **budget)
        member.theta.copy_(theta.to(member.theta))
        out[name] = _most_collapsing_group(member, encoder, normalizer, shadow[:256])
    return out


@torch.no_grad()
def _most_collapsing_group(member, encoder, normalizer, imgs: torch.Tensor) -> Callable:
    """The group of ``member`` (a window of the grid) whose trigger collapses ``imgs`` most."""
    if member.num_groups == 1:
        return member
    groups = [member.group_trigger(k) for k in range(member.num_groups)]
    collapse = [mean_pairwise_cosine(pool_features(encoder(normalizer(t(imgs.float())))))
                for t in groups]
    return groups[int(torch.stack(collapse).argmax())]


def _stamped(trigger: Callable, imgs: torch.Tensor, batch_size: int, seed: int) -> torch.Tensor:
    gen = torch.Generator(device=imgs.device).manual_seed(seed)
    return torch.cat([trigger(imgs[i:i + batch_size], generator=gen).clamp(0, 255)
                      for i in range(0, len(imgs), batch_size)])


def landing_asr(pred: torch.Tensor, labels: torch.Tensor, num_classes: int):
    """ASR toward the class the predictions land in most: ``(asr %, class)``.

    For each class ``c``, the share of the images of other classes predicted ``c``; the
    largest one.
    """
    hits = torch.bincount(pred[pred != labels], minlength=num_classes).float()
    others = (len(labels) - torch.bincount(labels, minlength=num_classes)).clamp_min(1).float()
    rate = hits / others
    c = int(rate.argmax())
    return percent(pred[labels != c] == c), c


def audit_encoder(encoder: nn.Module, normalizer: nn.Module, shadow: torch.Tensor,
                  probe_data: tuple, test_data: tuple, cfg: dict) -> dict:
    """Invert triggers on ``encoder`` and measure the strongest one downstream.

    Args:
        encoder (nn.Module): The encoder to audit (any: suspect, defended or clean).
        normalizer (nn.Module): Pixel space to the encoder's input.
        shadow (Tensor): Clean uint8 images the inversions run on.
        probe_data (tuple): ``(images, labels)`` the linear probe is trained on.
        test_data (tuple): ``(images, labels)`` the triggers are scored on.
        cfg (dict): :func:`check_audit_cfg` settings.

    Returns:
        dict: ``collapse`` and ``asr`` (the largest over the inverted triggers), ``best`` (the
        trigger with the largest ASR) and its ``target``, ``clean_collapse`` (the clean test
        images' mean pairwise cosine) and ``triggers`` (per trigger: ``collapse``, ``asr``,
        ``target``).
    """
    device = module_device(encoder)
    bs = int(cfg['batch_size'])

    def feats(imgs):
        return encode_batched(encoder, normalizer, imgs, bs, device=device, to_cpu=True)

    with eval_mode(encoder):
        triggers = inverted_triggers(encoder, normalizer, shadow.to(device), cfg)
        (px, py), (tx, ty) = probe_data, test_data
        num_classes = int(max(py.max(), ty.max())) + 1
        with torch.no_grad():
            probe_feats = F.normalize(feats(px), dim=1)
        head = train_linear_probe(probe_feats, py, num_classes, seed=cfg['seed'])
        rows = {}
        with torch.no_grad():
            for name, trig in triggers.items():
                f = feats(_stamped(trig, tx.to(device), bs, cfg['seed']))
                asr, target = landing_asr(head(F.normalize(f, dim=1)).argmax(1), ty,
                                          num_classes)
                rows[name] = dict(collapse=round(float(mean_pairwise_cosine(f)), 4),
                                  asr=round(asr, 2), target=target)
            clean = round(float(mean_pairwise_cosine(feats(tx))), 4)
    best = max(rows, key=lambda n: rows[n]['asr'])
    return dict(collapse=max(r['collapse'] for r in rows.values()), asr=rows[best]['asr'],
                best=best, target=rows[best]['target'], clean_collapse=clean, triggers=rows)
