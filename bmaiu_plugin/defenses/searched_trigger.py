"""Searched-trigger unlearning: find the patch the suspect reacts to, then unlearn it.

A label-free defense, blind to the attack (``docs/searched_trigger.md``):

1. **search** (before training, on the frozen suspect ``f0``): the ``S x S`` pattern of a patch
   trigger ``e`` pasted at a random position per image is optimised so that the triggered
   features of the defense data collapse most (mean pairwise cosine, DECREE's signature of a
   backdoor; :func:`~bmaiu_plugin.defenses.trigger_search.search_patch_pattern`);
2. **unlearn** ``e`` with BMAIU's stage-2 loss (:func:`~bmaiu_plugin.defenses.bmaiu.
   unlearning_losses`), the suspect as the frozen teacher::

       L = u2 * mean [1 - cos(f(x + e), f0(x))] + u3 * mean cos(f(x + e), f0(t_j))
         + u0 * mean [1 - cos(f(x), f0(x))]

   with ``t_j`` drawn from a reference set R (chosen as BMAIU's);
3. **re-search** every ``interval`` epochs on the encoder being unlearned
   (:class:`~bmaiu_plugin.defenses.trigger_search.TriggerSearchHook`, warm-started from the last
   pattern, ``restart_steps`` steps), so that unlearning keeps acting on whatever patch the
   encoder still reacts to.

It is BMAIU without the implantation stage, with the trigger found rather than drawn.
"""
from typing import Dict, Optional

import torch

from ..datasets.reference import check_reference_cfg, dataset_arrays, select_reference
from ..models.finetune_base import sample_rows
from ..registry import MODELS
from ..utils.data import encode_batched
from ..utils.validate import check_number
from .base import BaseDefense
from .bmaiu import build_custom_trigger, unlearning_losses
from .trigger_search import check_search_cfg, search_into

__all__ = ['SearchedTriggerUnlearning']


@MODELS.register_module()
class SearchedTriggerUnlearning(BaseDefense):
    """Search a patch trigger the suspect reacts to, and unlearn it (re-searching as it goes).

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        trigger (dict): The trigger whose pattern is searched (a ``PatchTrigger``: its size and
            position rule stay; its seeded pattern is the first search's start).
        search (dict): The first search, on the suspect
            (:func:`~bmaiu_plugin.defenses.trigger_search.search_patch_pattern`: ``steps``,
            ``lr``, ``batch_size``, ``objective``, ``seed``; the seed defaults to
            ``seed + step``).
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
        self.reference_cfg = check_reference_cfg(reference, f'{what} reference')
        self.u0, self.u2, self.u3 = float(u0), float(u2), float(u3)
        # the first search's objective (start, end): kept in checkpoints, so that a resumed run
        # (which does not search again) reports the same
        self.register_buffer('search_result', torch.full((2,), float('nan')))
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

    def _encode_suspect(self, imgs: torch.Tensor) -> torch.Tensor:
        return encode_batched(self.suspect, self.normalizer, imgs, device=self.step.device)

    def search_trigger(self, encoder: str = 'backbone') -> dict:
        """Replace the pattern by the one ``encoder`` (``'suspect'`` or ``'backbone'``) reacts
        to most; the ``'backbone'`` searches run ``restart_steps`` steps.

        Returns:
            dict: The search's objective before and after.
        """
        if self.search_images is None:
            raise RuntimeError(f'{type(self).__name__}: the defense data is not loaded '
                               '(PrepareModelHook runs first)')
        cfg = dict(self.search_cfg)
        cfg.setdefault('seed', self.seed + int(self.step))
        if encoder != 'suspect' and self.restart_steps is not None:
            cfg['steps'] = self.restart_steps
        return search_into(self.trigger, getattr(self, encoder), self.normalizer,
                           self.search_images, **cfg)

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
        return unlearning_losses(self.features, self.backbone, self.suspect, imgs, xe, ref,
                                 self.u0, self.u2, self.u3)

    # the defense interface --------------------------------------------------------------
    def probe_encoders(self) -> Dict[str, dict]:
        """The suspect and the defended encoder, the latter also with the searched trigger
        (``custom``, target: the class the probe gives R)."""
        own = [dict(name='custom', trigger=self.trigger, target=-1)]
        return dict(suspect=dict(encoder=self.suspect),
                    defended=dict(encoder=self.backbone, triggers=own, reference=self.reference))

    def defense_report(self) -> dict:
        """R's choice and the first search's objective (before -> after, on the suspect)."""
        start, end = self.search_result.tolist()
        return dict(reference={k: v for k, v in self.reference_info.items() if k != 'indices'},
                    trigger_search=dict(objective=self.search_cfg.get('objective', 'collapse'),
                                        start=round(start, 4), end=round(end, 4)))

    def preparation_summary(self) -> dict:
        return self.defense_report()
