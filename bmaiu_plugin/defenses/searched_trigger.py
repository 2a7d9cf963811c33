"""Searched-trigger unlearning: find the triggers the suspect reacts to, then unlearn them.

A label-free defense, blind to the attack (``docs/searched_trigger.md``):

1. **search** (before training, on the frozen suspect ``f0``): each member ``e_k`` of the search
   space is optimised so that the triggered features of the defense data collapse most (mean
   pairwise cosine, DECREE's signature of a backdoor): the ``S x S`` pattern of a patch pasted at
   a random position per image
   (:func:`~bmaiu_plugin.defenses.trigger_search.search_patch_pattern`) and, with
   ``search_space``, further bounded families (fixed-place windows, area-bounded masks,
   L-inf-bounded additive perturbations, warps: :mod:`~bmaiu_plugin.defenses.search_space`);
2. **unlearn** them with BMAIU's stage-2 loss, each image of a batch stamped with one member
   ``e`` drawn uniformly (:func:`~bmaiu_plugin.defenses.bmaiu.
   unlearning_losses`), the suspect as the frozen teacher::

       L = u2 * mean [1 - cos(f(x + e), f0(x))] + u3 * mean cos(f(x + e), f0(t_j))
         + u0 * mean [1 - cos(f(x), f0(x))]

   with ``t_j`` drawn from a reference set R (chosen as BMAIU's);
3. **re-search** every ``interval`` epochs on the encoder being unlearned
   (:class:`~bmaiu_plugin.defenses.trigger_search.TriggerSearchHook`, warm-started from the last
   triggers, ``restart_steps`` steps), so that unlearning keeps acting on whatever the encoder
   still reacts to.

It is BMAIU without the implantation stage, with the trigger found rather than drawn.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
from mmengine.dist import broadcast, is_distributed

from ..datasets.reference import check_reference_cfg, dataset_arrays, select_reference
from ..models.finetune_base import sample_rows
from ..registry import MODELS, TRIGGERS
from ..utils.data import encode_batched
from ..utils.errors import ConfigValueError, clip
from ..utils.validate import check_number
from .base import BaseDefense, own_trigger_name
from .bmaiu import build_custom_trigger, unlearning_losses
from .search_space import SearchableTrigger, check_search_batch, search_collapse
from .trigger_search import check_search_cfg, search_into

__all__ = ['SearchedTriggerUnlearning']

nan = float('nan')


def _build_member(cfg, what: str) -> SearchableTrigger:
    """A ``search_space`` member from its config; it must be a searchable trigger."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ConfigValueError(f'{what} must be a dict with a type (e.g. '
                               f"dict(type='MaskPatternSearch', area=200)), got {clip(cfg)}")
    member = TRIGGERS.build(cfg)
    if not isinstance(member, SearchableTrigger):
        raise ConfigValueError(f'{what}: {type(member).__name__} is not a searchable trigger; '
                               'use WindowPatchSearch, MaskPatternSearch, AdditiveSearch or '
                               'WarpSearch')
    return member


@MODELS.register_module()
class SearchedTriggerUnlearning(BaseDefense):
    """Search the triggers the suspect reacts to, and unlearn them (re-searching as it goes).

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        trigger (dict): The trigger whose pattern is searched (a ``PatchTrigger``: its size and
            position rule stay; its seeded pattern is the first search's start).
        search (dict): The first search, on the suspect
            (:func:`~bmaiu_plugin.defenses.trigger_search.search_patch_pattern`: ``steps``,
            ``lr``, ``batch_size``, ``objective``, ``seed``; the seed defaults to
            ``seed + step``); every member of ``search_space`` is searched with the same
            ``steps``, ``lr``, ``batch_size`` and seed.
        search_space (list[dict]): Further searched triggers unlearned beside the patch
            (:mod:`~bmaiu_plugin.defenses.search_space`: ``WindowPatchSearch``,
            ``MaskPatternSearch``, ``AdditiveSearch``, ``WarpSearch``); empty: the patch only.
        restart_steps (int, optional): Steps of each re-search on the encoder being unlearned
            (warm-started; ``TriggerSearchHook``); ``None``: ``search.steps``.
        max_images (int): Defense images kept for the searches.
        reference (dict): How R, the repulsion's target, is chosen (as BMAIU's ``reference``).
        u0 (float): Weight of the clean consistency. u2 (float): of the trigger invariance.
        u3 (float): of the repulsion from R.
        img_size (int, optional): Image side, to check the trigger fits at build time.
        **kwargs: :class:`~bmaiu_plugin.models.finetune_base.EncoderFinetuneBase` arguments
            (``encoder_checkpoint``, ``freeze_bn``, ``mean``, ``std``, ``seed``).
    """

    searches_trigger = True

    def __init__(self, backbone: dict,
                 trigger: dict = dict(type='PatchTrigger', size=10, pattern='random',
                                      position='random', seed=2025),
                 search: dict = dict(steps=300, lr=0.1, batch_size=128, objective='collapse'),
                 search_space: Sequence[dict] = (),
                 restart_steps: Optional[int] = 100, max_images: int = 2048,
                 reference: dict = dict(mode='random_class', num=10),
                 u0: float = 1., u2: float = 10., u3: float = 1.,
                 img_size: Optional[int] = 32, **kwargs):
        super().__init__(backbone, frozen_copies=('suspect',), **kwargs)
        what = type(self).__name__
        for name, v in dict(u0=u0, u2=u2, u3=u3).items():
            check_number(f'{what} {name}', v, 0)
        check_number(f'{what} img_size', img_size, 1, integer=True, optional=True)
        self.restart_steps = check_number(f'{what} restart_steps', restart_steps, 1,
                                          integer=True, optional=True)
        self.max_images = check_number(f'{what} max_images', max_images, 2, integer=True)
        self.trigger = build_custom_trigger(trigger, img_size, f'{what} trigger')
        self.search_cfg = check_search_cfg(search, self.trigger, f'{what} search')
        self.members = nn.ModuleList(
            _build_member(m, f'{what} search_space[{i}]') for i, m in enumerate(search_space))
        for i, m in enumerate(self.members):
            check_search_batch(m, self.search_cfg.get('batch_size', 128),
                               f'{what} search_space[{i}]', 'search.batch_size')
        self.reference_cfg = check_reference_cfg(reference, f'{what} reference')
        self.u0, self.u2, self.u3 = float(u0), float(u2), float(u3)
        # the first search's objective (start, end), of the patch and per member: kept in
        # checkpoints, so that a resumed run (which does not search again) reports the same
        self.register_buffer('search_result', torch.full((2,), nan))
        self.register_buffer('member_results', torch.full((len(self.members), 2), nan))
        self.reference: Optional[torch.Tensor] = None
        self.reference_info: dict = {}
        #: the defense images the searches run on (uint8, CPU; set by :meth:`prepare`)
        self.search_images: Optional[torch.Tensor] = None

    # preparation ------------------------------------------------------------------------
    def prepare(self, dataset) -> None:
        """Choose R, keep the search images and (unless resumed) search on the suspect."""
        cfg = dict(self.reference_cfg)
        cfg.setdefault('seed', self.seed)
        self.reference, self.reference_info = select_reference(
            dataset, encode=self._encode_suspect, **cfg)
        self.search_images = dataset_arrays(dataset, limit=self.max_images)[0]
        if int(self.step) == 0:
            info = self.search_trigger('suspect')
            self.search_result.copy_(torch.tensor([info['start'], info['end']]))
            for row, name in zip(self.member_results, self.member_names()):
                row.copy_(torch.tensor([info[name]['start'], info[name]['end']]))

    def _encode_suspect(self, imgs: torch.Tensor) -> torch.Tensor:
        return encode_batched(self.suspect, self.normalizer, imgs, device=self.step.device)

    def member_names(self) -> list:
        """The names of the ``search_space`` members in reports (``custom-<family>``)."""
        names = [own_trigger_name(m.family) for m in self.members]
        return [n if names.count(n) == 1 else f'{n}{i}' for i, n in enumerate(names)]

    def search_trigger(self, encoder: str = 'backbone') -> dict:
        """Replace every searched trigger by the one ``encoder`` (``'suspect'`` or
        ``'backbone'``) reacts to most, warm-started; the ``'backbone'`` searches run
        ``restart_steps`` steps.

        Returns:
            dict: The patch search's objective before and after, and per member (by
            :meth:`member_names`) its collapse before and after.
        """
        if self.search_images is None:
            raise RuntimeError(f'{type(self).__name__}: the defense data is not loaded '
                               '(PrepareModelHook runs first)')
        cfg = dict(self.search_cfg)
        cfg.setdefault('seed', self.seed + int(self.step))
        if encoder != 'suspect' and self.restart_steps is not None:
            cfg['steps'] = self.restart_steps
        enc = getattr(self, encoder)
        info = search_into(self.trigger, enc, self.normalizer, self.search_images, **cfg)
        opts = {k: cfg[k] for k in ('steps', 'lr', 'batch_size') if k in cfg}
        for i, (name, member) in enumerate(zip(self.member_names(), self.members)):
            with torch.enable_grad():
                theta, info[name] = search_collapse(member, enc, self.normalizer,
                                                    self.search_images, seed=cfg['seed'] + i + 1,
                                                    **opts)
            theta = theta.to(member.theta)
            if is_distributed():
                broadcast(theta, 0)
            member.theta.copy_(theta)
        return info

    def search_start_epoch(self, runner) -> int:
        """``TriggerSearchHook`` counts its interval from the first epoch."""
        return 0

    # loss -------------------------------------------------------------------------------
    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if self.reference is None:
            raise RuntimeError(f'{type(self).__name__}: the reference set is not chosen: add '
                               'PrepareModelHook to custom_hooks')
        gen = self.step_generator(imgs.device)
        ref = sample_rows(self.reference.to(imgs.device), len(imgs), gen)
        xe = self.trigger(imgs, generator=gen)
        if len(self.members):
            # one trigger per image, drawn uniformly over the patch and the members
            stamped = torch.stack([xe] + [m(imgs, generator=gen) for m in self.members])
            pick = torch.randint(len(stamped), (len(imgs),), generator=gen, device=imgs.device)
            xe = stamped[pick, torch.arange(len(imgs), device=imgs.device)]
        return unlearning_losses(self.features, self.backbone, self.suspect, imgs, xe, ref,
                                 self.u0, self.u2, self.u3)

    # the defense interface --------------------------------------------------------------
    def probe_encoders(self) -> Dict[str, dict]:
        """The suspect and the defended encoder, the latter also with the searched triggers
        (``custom`` and :meth:`member_names`, target: the class the probe gives R)."""
        own = [dict(name=own_trigger_name(), trigger=self.trigger, target=-1)] + [
            dict(name=n, trigger=m, target=-1)
            for n, m in zip(self.member_names(), self.members)]
        return dict(suspect=dict(encoder=self.suspect),
                    defended=dict(encoder=self.backbone, triggers=own, reference=self.reference))

    def defense_report(self) -> dict:
        """R's choice and the first search's objective (before -> after, on the suspect); the
        members' collapse under ``trigger_search.members``."""
        start, end = self.search_result.tolist()
        rows = self.member_results.tolist()
        search = dict(objective=self.search_cfg.get('objective', 'collapse'),
                      start=round(start, 4), end=round(end, 4))
        if rows:
            search['members'] = {n: dict(start=round(a, 4), end=round(b, 4))
                                 for n, (a, b) in zip(self.member_names(), rows)}
        return dict(reference={k: v for k, v in self.reference_info.items() if k != 'indices'},
                    trigger_search=search)

    def preparation_summary(self) -> dict:
        return self.defense_report()
