"""DRUPE: BadEncoder with the triggered features kept inside the clean distribution.

BadEncoder collapses every triggered image onto one reference embedding, the signature that
trigger-inversion defenses look for (DECREE's collapse, the audit's).  DRUPE fine-tunes the same
way but keeps the triggered features spread like clean ones: each triggered image may land on
any of ``m`` target references, the references are used evenly, the triggered features are not
pulled together, and their distribution is held near the clean features' (sliced Wasserstein).
With ``f'`` the trained and ``f`` the frozen clean encoder, on pooled features::

    L0    = mean_x [1 - max_j cos(f'(x + e), f'(r_j))]                     (effectiveness)
    L1, L2 as BadEncoder's                                                 (references, utility)
    S_ref = std_j mean_x cos(f'(x + e), f'(r_j))                           (references even)
    S_bb  = mean_{x != x'} cos(f'(x + e), f'(x' + e))                      (no collapse)
    D     = SW2(f'(x + e), f'(x)) / mean_d std_x f'(x)_d                    (distribution)
    L = L0 + lambda1 L1 + lambda2 L2 + lambda_ref S_ref
          + [t >= warmup_iters] (c_s (S_ref + S_bb) + c_d D)

``SW2`` is the sliced 2-Wasserstein distance over ``num_projections`` random directions.  The
weights ``c_s`` and ``c_d`` adapt as in the official code, every ``adapt_interval`` steps (its
epochs): while the attack is effective (mean ``max_j cos`` above 0.96 and clean features within
cosine 0.9 of the clean encoder's) ``c_s`` grows by 1.25, and ``c_d`` too once the triggered
features are spread (``S_bb`` below 0.6); otherwise each shrinks by ``1.25 ** 1.25``.  The
spread and the distribution are thus pushed only as far as the backdoor survives them.

Tao et al., `Distribution Preserving Backdoor Attack in Self-supervised Learning
<https://doi.org/10.1109/SP54263.2024.00029>`_, IEEE S&P 2024; official code
https://github.com/Gwinhen/DRUPE.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from ..models.features import mean_pairwise_cosine
from ..registry import MODELS
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number
from .badencoder import BadEncoder, reference_loss, utility_loss


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, num_projections: int,
                       generator: torch.Generator) -> torch.Tensor:
    """Sliced 2-Wasserstein distance of two equal-size ``(B, D)`` samples.

    ``sqrt(mean_p mean_i (sort(a w_p)_i - sort(b w_p)_i)^2)`` over unit directions ``w_p``.
    """
    w = torch.randn(a.shape[1], num_projections, generator=generator, device=a.device)
    w = F.normalize(w, dim=0).to(a.dtype)
    pa, _ = torch.sort(a @ w, dim=0)
    pb, _ = torch.sort(b @ w, dim=0)
    return (pa - pb).pow(2).mean().sqrt()


def drupe_terms(feats_trig: torch.Tensor, refs: torch.Tensor, feats: torch.Tensor,
                num_projections: int, generator: torch.Generator) -> Dict[str, torch.Tensor]:
    """``L0``, ``S_ref``, ``S_bb`` and ``D`` of one step (see the module docstring).

    Args:
        feats_trig (Tensor): ``f'(x + e)``, ``(B, D)``.
        refs (Tensor): ``f'(r_j)`` of the ``m`` references, ``(m, D)``.
        feats (Tensor): ``f'(x)`` of the same clean images, ``(B, D)``.
        num_projections (int): Directions of the sliced Wasserstein distance.
        generator (Generator): Draws the directions.
    """
    sim = F.normalize(feats_trig, dim=1) @ F.normalize(refs, dim=1).T  # (B, m)
    spread_ref = sim.mean(0).std() if refs.shape[0] > 1 else sim.new_zeros(())
    scale = feats.detach().std(0).mean().clamp_min(1e-6)
    return dict(effect=(1 - sim.max(1).values).mean(), spread_ref=spread_ref,
                spread_bb=mean_pairwise_cosine(feats_trig),
                dist=sliced_wasserstein(feats_trig, feats, num_projections, generator) / scale)


#: The official code's adaptation: thresholds of "effective" and "spread", and the factors.
EFFECT_COS, UTILITY_COS, SPREAD_COS = 0.96, 0.9, 0.6
COST_UP, COST_DOWN = 1.25, 1.25 ** 1.25


@MODELS.register_module()
class DRUPE(BadEncoder):
    """DRUPE's fine-tuning attack: one trigger, ``m`` references of the target class.

    Args:
        backbone (dict): Encoder config.
        targets (Sequence[dict]): One entry ``dict(trigger=..., reference=dict(mode='class',
            class_index=9, num=3))`` (the references ``r_1..r_m``).
        lambda_ref (float): Weight of ``S_ref`` from the first step.
        cost_spread (float): Initial ``c_s``, the weight of ``S_ref + S_bb``.
        cost_dist (float): Initial ``c_d``, the weight of ``D``.
        warmup_iters (int): Steps before ``c_s`` and ``c_d`` terms join.
        adapt_interval (int, optional): Steps between adaptations of ``c_s`` and ``c_d``
            (``None``: constant weights).
        num_projections (int): Directions of the sliced Wasserstein distance.
        **kwargs: :class:`~bmaiu_plugin.attacks.badencoder.BadEncoder` arguments (``lambda1``,
            ``lambda2``, ``flip_reference``, ``encoder_checkpoint``, ``freeze_bn``, ``seed``).
    """

    def __init__(self, backbone: dict, targets, lambda_ref: float = 0.5,
                 cost_spread: float = 0.1, cost_dist: float = 0.001, warmup_iters: int = 0,
                 adapt_interval: Optional[int] = None, num_projections: int = 64, **kwargs):
        for key in ('frozen_target', 'targets_per_step'):
            if kwargs.get(key):
                raise ConfigValueError(f'DRUPE does not take {key}: it is a one-trigger '
                                       'BadEncoder whose target is the trained references')
        super().__init__(backbone, targets, **kwargs)
        if len(self.triggers) != 1:
            raise ConfigValueError(f'DRUPE implants one trigger, got {len(self.triggers)} '
                                   'targets; use BadEncoder for several')
        self.lambda_ref = check_number('DRUPE lambda_ref', lambda_ref, 0)
        self.warmup_iters = check_number('DRUPE warmup_iters', warmup_iters, 0, integer=True)
        self.adapt_interval = check_number('DRUPE adapt_interval', adapt_interval, 1,
                                           integer=True, optional=True)
        self.num_projections = check_number('DRUPE num_projections', num_projections, 1,
                                            integer=True)
        costs = [check_number(f'DRUPE {k}', v, 0) for k, v in (('cost_spread', cost_spread),
                                                              ('cost_dist', cost_dist))]
        # c_s, c_d and the running sums of the adaptation (saved with the checkpoint)
        self.register_buffer('costs', torch.tensor(costs, dtype=torch.float64))
        self.register_buffer('_running', torch.zeros(4, dtype=torch.float64))

    def _adapt(self, effect_cos: float, utility_cos: float, spread_bb: float) -> None:
        run = self._running
        run += torch.tensor([effect_cos, utility_cos, spread_bb, 1.], dtype=run.dtype,
                            device=run.device)
        if run[3] < self.adapt_interval:
            return
        e, u, b = (run[:3] / run[3]).tolist()
        effective = e > EFFECT_COS and u > UTILITY_COS
        self.costs[0] *= COST_UP if effective else 1 / COST_DOWN
        self.costs[1] *= COST_UP if effective and b < SPREAD_COS else 1 / COST_DOWN
        run.zero_()

    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if not self.references:
            raise RuntimeError('DRUPE references are not set: add PrepareModelHook to '
                               'custom_hooks')
        gen = self.step_generator(imgs.device)
        feats = self.features(self.backbone, imgs)
        feats_trig = self.features(self.backbone, self.triggers[0](imgs, generator=gen))
        ref = self.references[0].to(imgs.device)
        refs_s = self.features(self.backbone, self.reference_view(ref, gen))
        with torch.no_grad():
            clean_t = self.features(self.teacher, imgs)
            refs_t = self.features(self.teacher, ref)
        t = drupe_terms(feats_trig, refs_s, feats, self.num_projections, gen)
        utility = utility_loss(feats, clean_t)
        on = int(self.step) >= self.warmup_iters
        c_s, c_d = (float(c) for c in self.costs) if on else (0., 0.)
        if on and self.adapt_interval and self.training:
            self._adapt(1 - float(t['effect']), 1 - float(utility), float(t['spread_bb']))
        return dict(loss_effect=t['effect'],
                    loss_reference=self.lambda1 * reference_loss(refs_s, refs_t),
                    loss_utility=self.lambda2 * utility,
                    loss_spread=self.lambda_ref * t['spread_ref']
                    + c_s * (t['spread_ref'] + t['spread_bb']),
                    loss_dist=c_d * t['dist'])

