"""BMAIU with the ablation options of the CPU-scale study (docs/results.md), outside the package.

``BMAIUAblation`` is :class:`bmaiu_plugin.defenses.BMAIU` plus the switches the study varied; with
every switch at its default it computes exactly what ``BMAIU`` computes (same terms, same random
draws).  Load it from a config with::

    custom_imports = dict(imports=['projects.cpu_study.bmaiu_ablation'],
                          allow_failed_imports=False)
    model = dict(type='BMAIUAblation', ...)

(``PYTHONPATH`` = the repository root).  The options, and what the study measured with them, are
described in docs/bmaiu.md ("Ablation options") and docs/results.md.  A variant with
``trigger_search`` re-searches its custom pattern during stage 2 with
``dict(type='TriggerSearchHook', interval=N)`` (``interval=None``: off).
"""
import functools
from typing import Dict, Optional, Sequence

import torch

from bmaiu_plugin.datasets.reference import dataset_arrays, select_reference
from bmaiu_plugin.defenses.bmaiu import BMAIU, BMAIUStageHook
from bmaiu_plugin.defenses.trigger_search import check_search_cfg, search_into
from bmaiu_plugin.models.finetune_base import cosine, sample_rows
from bmaiu_plugin.registry import MODELS
from bmaiu_plugin.utils.errors import ConfigValueError
from bmaiu_plugin.utils.validate import check_number

REPULSIONS = ('cosine', 'hinge', 'squared')
ANCHORS = ('student', 'student_detached', 'teacher')
#: ``trigger_search`` keys beyond ``search_patch_pattern``'s.
SEARCH_EXTRA = ('max_images', 'restarts_steps')


@MODELS.register_module()
class BMAIUAblation(BMAIU):
    """BMAIU with the study's switches.

    Args (beyond :class:`~bmaiu_plugin.defenses.BMAIU`'s):
        reference_anchor (float): Weight of stage 1's R-anchoring term; 0 drops it.
        implant_target (str): ``'suspect'`` (fixed ``f0(t_j)``) or ``'student'`` (the paper's
            trainable ``f1(t_j)``).
        repulsion (str): One of :data:`REPULSIONS`: ``c``, ``max(0, c - hinge_margin)``, ``c**2``.
        hinge_margin (float): Margin of the hinge repulsion.
        repulsion_anchor (str): One of :data:`ANCHORS`: ``f2(t_j)`` (the paper's),
            ``sg[f2(t_j)]`` or the fixed ``f1(t_j)``.
        trigger_fraction (float): Share of each stage-2 batch stamped with ``e`` (1 = all).
        center_features (bool): Loss cosines on features minus the suspect's mean feature over
            the defense data.
        implant_blocks / unlearn_blocks (Sequence[str], optional): Top-level backbone modules
            stage 1 / stage 2 may change (the others' gradients are zeroed); ``None``: all.
        trigger_search (dict, optional): Before stage 1, search the custom pattern on the
            suspect (``steps``, ``lr``, ``batch_size``, ``objective``, ``seed``, ``max_images``
            (default 2048), ``restarts_steps`` (steps of the ``TriggerSearchHook`` re-searches)).
    """

    def __init__(self, backbone: dict,
                 custom_trigger: dict = dict(type='PatchTrigger', size=4, pattern='random',
                                             position='random', seed=2025),
                 reference: dict = dict(mode='random_class', num=10),
                 u1: float = 1., u2: float = 10., u3: float = 1., u0: float = 1.,
                 reference_anchor: float = 1., implant_target: str = 'suspect',
                 repulsion: str = 'cosine', hinge_margin: float = 0.,
                 repulsion_anchor: str = 'teacher', trigger_fraction: float = 1.,
                 center_features: bool = False, img_size: Optional[int] = 32,
                 implant_blocks: Optional[Sequence[str]] = None,
                 unlearn_blocks: Optional[Sequence[str]] = None,
                 trigger_search: Optional[dict] = None, **kwargs):
        super().__init__(backbone, custom_trigger=custom_trigger, reference=reference, u0=u0,
                         u1=u1, u2=u2, u3=u3, img_size=img_size, **kwargs)
        self.stage_blocks = {1: self._check_blocks('implant_blocks', implant_blocks),
                             2: self._check_blocks('unlearn_blocks', unlearn_blocks)}
        if repulsion not in REPULSIONS:
            raise ConfigValueError(f'repulsion must be one of {REPULSIONS}, got {repulsion!r}')
        if repulsion_anchor not in ANCHORS:
            raise ConfigValueError(
                f'repulsion_anchor must be one of {ANCHORS}, got {repulsion_anchor!r}')
        if implant_target not in ('suspect', 'student'):
            raise ConfigValueError(
                f"implant_target must be 'suspect' or 'student', got {implant_target!r}")
        check_number('BMAIU trigger_fraction', trigger_fraction, 0, 1, inclusive=(False, True))
        check_number('BMAIU reference_anchor', reference_anchor, 0)
        check_number('BMAIU hinge_margin (a cosine)', hinge_margin, -1, 1)
        self.trigger_search = None if trigger_search is None else check_search_cfg(
            trigger_search, self.custom_trigger, 'trigger_search', SEARCH_EXTRA)
        if self.trigger_search is not None:
            self.register_buffer('trigger_search_result', torch.full((2,), float('nan')))
        self.reference_anchor = float(reference_anchor)
        self.implant_target = implant_target
        self.repulsion, self.hinge_margin = repulsion, float(hinge_margin)
        self.repulsion_anchor = repulsion_anchor
        self.trigger_fraction = float(trigger_fraction)
        self.center_features = bool(center_features)
        #: mean suspect feature of the defense data (set with R; recomputed identically on resume)
        self.feature_center: Optional[torch.Tensor] = None
        if any(v is not None for v in self.stage_blocks.values()):
            for name, p in self.backbone.named_parameters():
                if p.requires_grad:
                    p.register_hook(functools.partial(self._stage_grad, name.split('.')[0]))
        self.search_images: Optional[torch.Tensor] = None
        self._stage2_start: Optional[int] = None

    # set-up ------------------------------------------------------------------------------
    def _check_blocks(self, key: str, blocks: Optional[Sequence[str]]) -> Optional[frozenset]:
        if blocks is None:
            return None
        names = [n for n, m in self.backbone.named_children() if any(True for _ in m.parameters())]
        blocks = [blocks] if isinstance(blocks, str) else list(blocks)
        unknown = [b for b in blocks if b not in names]
        if not blocks or unknown:
            raise ConfigValueError(f'{key} must name top-level backbone modules with parameters '
                                   f'({", ".join(names)}); got {blocks}')
        return frozenset(blocks)

    def _stage_grad(self, block: str, grad: torch.Tensor) -> torch.Tensor:
        allowed = self.stage_blocks[int(self.stage)]
        return grad if allowed is None or block in allowed else torch.zeros_like(grad)

    def prepare(self, dataset) -> None:
        """R (as BMAIU), plus the feature center and the first trigger search when enabled."""
        cfg = dict(self.reference_cfg)
        cfg.setdefault('seed', self.seed)
        arrays = None
        if not self.center_features:
            self.reference, self.reference_info = select_reference(
                dataset, encode=self._encode_suspect, **cfg)
        else:
            # centering needs f0 features of the whole defense data; k-means needs the same
            # ones: load the images and encode them once for both
            arrays = dataset_arrays(dataset)
            feats = self._encode_suspect(arrays[0])
            encode = lambda x: feats if x is arrays[0] else self._encode_suspect(x)  # noqa: E731
            self.reference, self.reference_info = select_reference(
                dataset, encode=encode, arrays=arrays, **cfg)
            self.feature_center = feats.mean(0).to(self.step.device)
        if self.trigger_search is not None:
            cap = int(self.trigger_search.get('max_images', 2048))
            self.search_images = arrays[0][:cap] if arrays is not None else \
                dataset_arrays(dataset, limit=cap)[0]
            if int(self.step) == 0 and int(self.stage) == 1:
                info = self.search_trigger('suspect')
                self.trigger_search_result.copy_(torch.tensor([info['start'], info['end']]))
            start, end = self.trigger_search_result.tolist()
            self.reference_info['trigger_search'] = dict(
                objective=self.trigger_search.get('objective', 'collapse'),
                start=round(start, 4), end=round(end, 4))

    # the trigger search (TriggerSearchHook's interface) -----------------------------------
    @property
    def searches_trigger(self) -> bool:
        return self.trigger_search is not None

    def search_trigger(self, encoder: str = 'backbone') -> dict:
        """Replace the custom pattern by the one ``encoder`` (``'suspect'`` before stage 1,
        ``'backbone'`` during stage 2, ``restarts_steps`` steps) reacts to most."""
        if self.trigger_search is None or self.search_images is None:
            raise RuntimeError('trigger_search is not configured or the defense data is not '
                               'loaded (PrepareModelHook runs first)')
        cfg = {k: v for k, v in self.trigger_search.items() if k not in SEARCH_EXTRA}
        cfg.setdefault('seed', self.seed + int(self.step))
        if encoder != 'suspect' and 'restarts_steps' in self.trigger_search:
            cfg['steps'] = self.trigger_search['restarts_steps']
        return search_into(self.custom_trigger, getattr(self, encoder), self.normalizer,
                           self.search_images, **cfg)

    def search_start_epoch(self, runner) -> Optional[int]:
        """Re-searches run in stage 2 only, counted from its first epoch."""
        if int(self.stage) != 2:
            return None
        if self._stage2_start is None:
            stage_hooks = [h for h in runner.hooks if isinstance(h, BMAIUStageHook)]
            self._stage2_start = stage_hooks[0].implant_epochs if stage_hooks else runner.epoch
        return self._stage2_start

    # losses ------------------------------------------------------------------------------
    def _cos(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The loss cosine: on centered features when ``center_features``."""
        if self.feature_center is None:
            return cosine(a, b)
        c = self.feature_center.to(a)
        return cosine(a - c, b - c)

    def _repel(self, cos: torch.Tensor) -> torch.Tensor:
        if self.repulsion == 'cosine':
            return cos
        if self.repulsion == 'hinge':
            return (cos - self.hinge_margin).clamp_min(0)
        return cos ** 2

    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if self.reference is None:
            raise RuntimeError('BMAIU reference set is not chosen: add PrepareModelHook to '
                               'custom_hooks')
        gen = self.step_generator(imgs.device)
        ref = sample_rows(self.reference.to(imgs.device), len(imgs), gen)
        xe = self.custom_trigger(imgs, generator=gen)
        if int(self.stage) == 1:
            return self.implant_losses(imgs, xe, ref)
        if self.trigger_fraction < 1.:
            keep = torch.rand(len(imgs), generator=gen, device=imgs.device) < \
                self.trigger_fraction
            xe = torch.where(keep[:, None, None, None], xe, imgs)
        return self._unlearn_losses(imgs, xe, ref)

    def implant_losses(self, x, xe, ref):
        f1_x, f1_xe = self.features(self.backbone, torch.cat([x, xe])).chunk(2)
        with torch.no_grad():
            f0_x = self.features(self.suspect, x)
            f0_r = self.features(self.suspect, ref)
        losses = dict(loss_consistency=(1 - self._cos(f1_x, f0_x)).mean())
        if self.implant_target == 'suspect' and self.reference_anchor == 0:
            target = f0_r
        else:
            f1_r = self.features(self.backbone, ref)
            target = f0_r if self.implant_target == 'suspect' else f1_r
            if self.reference_anchor > 0:
                losses['loss_anchor'] = self.u1 * self.reference_anchor * \
                    (1 - self._cos(f1_r, f0_r)).mean()
        losses['loss_effective'] = self.u1 * (1 - self._cos(f1_xe, target)).mean()
        losses['trigger_shift'] = cosine(f1_xe, f1_x).mean().detach()
        return losses

    def _unlearn_losses(self, x, xe, ref):
        inputs = [x, xe] + ([ref] if self.repulsion_anchor != 'teacher' else [])
        f2 = self.features(self.backbone, torch.cat(inputs)).split(len(x))
        f2_x, f2_xe = f2[0], f2[1]
        with torch.no_grad():
            f1_x = self.features(self.teacher, x)
            anchor = self.features(self.teacher, ref) if self.repulsion_anchor == 'teacher' \
                else None
        if anchor is None:
            anchor = f2[2] if self.repulsion_anchor == 'student' else f2[2].detach()
        return dict(
            loss_invariance=self.u2 * (1 - self._cos(f2_xe, f1_x)).mean(),
            loss_repulsion=self.u3 * self._repel(self._cos(f2_xe, anchor)).mean(),
            loss_consistency=self.u0 * (1 - self._cos(f2_x, f1_x)).mean(),
            trigger_shift=cosine(f2_xe, f2_x).mean().detach())
