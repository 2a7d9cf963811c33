"""BMAIU: Backdoor Mitigation through Active Implantation and Unlearning (Electronics 2025).

Two stages in one run (the switch is :class:`~bmaiu_plugin.engine.BMAIUStageHook`'s):

**Stage 1, active implantation** (Algorithm 1).  ``f0`` = the suspect encoder, frozen
(``self.suspect``); ``f1`` = ``self.backbone``, trained with::

    L_attack = L_consistency + u1 * L_effective
    L_consistency = mean_x [1 - cos(f1(x), f0(x))]
    L_effective   = mean_x [1 - cos(f1(x + e), T(t_j))]  (+ reference_anchor * mean_j [1 - cos(f1(t_j), f0(t_j))])

with ``t_j`` a reference image drawn per sample from R and ``T = f1`` (paper) or the fixed
``f0`` (``implant_target='suspect'``, default: stops the target itself drifting, which otherwise
lets the loss be met by pulling *every* feature toward R instead of implanting ``e``).

**Stage 2, unlearning** (Algorithm 2).  ``f1`` is frozen as the teacher (``self.teacher``);
``f2`` = ``self.backbone`` (initialized from ``f1``) is trained with::

    L_unlearn = u2 * mean_x [1 - cos(f2(x + e), f1(x))]       (L1: trigger no longer matters)
              + u3 * mean_x rep(cos(f2(x + e), A(t_j)))         (L2: away from the target)
              + u0 * mean_x [1 - cos(f2(x), f1(x))]             (L0: clean features kept)

**Sign convention.**  The paper writes every term as a minimised similarity ``s``; read
literally with ``s = cos`` that would pull triggered images *toward* the target and destroy clean
consistency.  The only reading under which each term does what the paper says it does is
``s = 1 - cos`` (a distance) for the terms to keep and ``+cos`` for the repulsion; this module
implements that reading (algorithms.md §4.3).  The alternatives §4.3 lists are options:
``repulsion`` in ``'cosine'`` (``+cos``, optimum anti-aligned), ``'hinge'``
(``max(0, cos - margin)``), ``'squared'`` (``cos**2``, pushes toward orthogonality); and the
anchor ``A`` in ``'student'`` (the paper's trainable ``f2(t_j)``), ``'student_detached'``
(``sg[f2(t_j)]``) or ``'teacher'`` (the fixed ``f1(t_j)``).

The defender's custom trigger ``e`` (a seeded random ``trigger_size`` patch at a new random
position per sample) and the reference set R are the *defense's own*; the attacker's trigger is
never an input of this model.  Only the evaluator (``val_cfg.triggers``) knows it.
"""
import functools
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn

from ..registry import MODELS
from ..triggers import build_trigger
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number
from .finetune_base import EncoderFinetuneBase, cosine, sample_rows
from .reference import check_reference_cfg, dataset_arrays, select_reference

REPULSIONS = ('cosine', 'hinge', 'squared')
ANCHORS = ('student', 'student_detached', 'teacher')


@MODELS.register_module()
class BMAIU(EncoderFinetuneBase):
    """The BMAIU defense (both stages).

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        custom_trigger (dict): The defender's trigger ``e``. Paper: a random 4x4 patch at a
            random position (16x16 on ImageNet-100).
        reference (dict): How R is chosen (:func:`~bmaiu_plugin.models.reference.select_reference`):
            ``mode`` ``'random_class'`` (default, labels needed), ``'kmeans'`` (label-free) or
            ``'files'``; ``num`` images.
        u1 (float): Weight of stage 1's ``L_effective``. Paper: 1.
        u2 (float): Weight of stage 2's trigger-invariance term (L1). Paper: 10.
        u3 (float): Weight of stage 2's repulsion term (L2). Paper: "moderate".
        u0 (float): Weight of stage 2's clean-consistency term (L0). Paper: 1 (0 is Table 8's
            "without consistency" ablation).
        reference_anchor (float): Weight of stage 1's reference-anchoring term (BadEncoder's L1);
            0 disables it.
        implant_target (str): ``'suspect'`` (fixed ``f0(t_j)``) or ``'student'`` (paper, ``f1(t_j)``).
        repulsion (str): One of :data:`REPULSIONS`.
        hinge_margin (float): Margin of the hinge repulsion.
        repulsion_anchor (str): One of :data:`ANCHORS`.
        trigger_fraction (float): Share of each batch stamped with ``e`` in stage 2 (1 = all).
        center_features (bool): Compute every loss cosine on features minus the suspect's mean
            feature over the defense data.  A weak encoder's features share a large common
            direction (clean images already have cosine ~0.9 to one another), which leaves
            ``1 - cos`` losses almost no gradient; centering removes that direction.
        img_size (int): Image side, to check the trigger fits at build time.
        implant_blocks (Sequence[str], optional): Top-level backbone modules stage 1 may change
            (e.g. ``('conv1', 'layer1', 'layer2')``); ``None`` (default, the paper): all.
        trigger_search (dict, optional): Before stage 1, optimise the custom trigger's pattern
            so that the suspect reacts to it most (:func:`~bmaiu_plugin.defenses.trigger_search.
            search_patch_pattern` arguments: ``steps``, ``lr``, ``batch_size``, ``objective``).
            ``None`` (default, the paper): keep the seeded random pattern.  Label-free and blind
            to the attacker's trigger; runs once (a resumed run keeps the checkpoint's pattern).
            With ``CustomTriggerSearchHook`` the search is repeated during stage 2 on the encoder
            being trained (``restarts_steps``: steps of those warm-started searches), so that
            unlearning keeps acting on whatever patch the encoder still reacts to; ``max_images``
            (default 2048) caps the defense images kept for it.
        unlearn_blocks (Sequence[str], optional): The same for stage 2.  The other blocks'
            gradients are zeroed (weight decay still applies to them), so the option works under
            DDP and needs no optimizer rebuild at the stage switch.
        **kwargs: :class:`EncoderFinetuneBase` arguments (``encoder_checkpoint``, ``freeze_bn``,
            ``mean``, ``std``, ``seed``).
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
        super().__init__(backbone, frozen_copies=('suspect', 'teacher'), **kwargs)
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
        for name, v in dict(u0=u0, u1=u1, u2=u2, u3=u3,
                            reference_anchor=reference_anchor).items():
            check_number(f'BMAIU {name}', v, 0)
        check_number('BMAIU hinge_margin (a cosine)', hinge_margin, -1, 1)
        check_number('BMAIU img_size', img_size, 1, integer=True, optional=True)
        trig = dict(custom_trigger)
        if img_size is not None and trig.get('type') in ('PatchTrigger', 'RandomPatchFamily'):
            trig.setdefault('img_size', img_size)
        try:
            self.custom_trigger: nn.Module = build_trigger(trig)
        except ConfigValueError as e:
            raise ConfigValueError(f'BMAIU custom_trigger: {e}') from None
        self.trigger_search = None if trigger_search is None else dict(trigger_search)
        if self.trigger_search is not None:
            self._check_search(self.trigger_search)
            # the first search's objective (start, end): kept in checkpoints, so that a resumed
            # run (which does not search again) reports the same metrics.json
            self.register_buffer('trigger_search_result', torch.full((2,), float('nan')))
        self.reference_cfg = check_reference_cfg(reference, 'BMAIU reference')
        self.u0, self.u1, self.u2, self.u3 = float(u0), float(u1), float(u2), float(u3)
        self.reference_anchor = float(reference_anchor)
        self.implant_target = implant_target
        self.repulsion, self.hinge_margin = repulsion, float(hinge_margin)
        self.repulsion_anchor = repulsion_anchor
        self.trigger_fraction = float(trigger_fraction)
        self.center_features = bool(center_features)
        #: mean suspect feature of the defense data (set with R; recomputed identically on resume)
        self.feature_center: Optional[torch.Tensor] = None
        self.register_buffer('stage', torch.ones((), dtype=torch.long))
        if any(v is not None for v in self.stage_blocks.values()):
            for name, p in self.backbone.named_parameters():
                if p.requires_grad:
                    p.register_hook(functools.partial(self._stage_grad, name.split('.')[0]))
        self.reference: Optional[torch.Tensor] = None
        self.reference_info: dict = {}
        #: defense images the trigger search runs on (uint8, CPU; set with R)
        self.search_images: Optional[torch.Tensor] = None

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

    def _check_search(self, cfg: dict) -> None:
        from ..defenses.trigger_search import OBJECTIVES
        keys = {'steps', 'lr', 'batch_size', 'objective', 'seed', 'max_images', 'restarts_steps'}
        if type(self.custom_trigger).__name__ != 'PatchTrigger':
            raise ConfigValueError('trigger_search needs a PatchTrigger custom trigger, got '
                                   f'{type(self.custom_trigger).__name__}')
        if set(cfg) - keys:
            raise ConfigValueError(f'unknown trigger_search keys {sorted(set(cfg) - keys)}; '
                                   f'allowed: {sorted(keys)}')
        if cfg.get('objective', 'collapse') not in OBJECTIVES:
            raise ConfigValueError(f'trigger_search.objective must be one of {OBJECTIVES}, got '
                                   f'{cfg["objective"]!r}')
        for k in ('steps', 'batch_size', 'max_images', 'restarts_steps'):
            if k in cfg:
                check_number(f'trigger_search.{k}', cfg[k], 2 if k == 'batch_size' else 1,
                             integer=True)
        if 'lr' in cfg:
            check_number('trigger_search.lr', cfg['lr'], 0, inclusive=(False, True))

    def _stage_grad(self, block: str, grad: torch.Tensor) -> torch.Tensor:
        allowed = self.stage_blocks[int(self.stage)]
        return grad if allowed is None or block in allowed else torch.zeros_like(grad)

    def prepare_reference(self, dataset) -> None:
        """Choose R from the defense data (labels, k-means on ``f0`` features, or files)."""
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
                info = self.search_custom_trigger()
                self.trigger_search_result.copy_(torch.tensor([info['start'], info['end']]))
            start, end = self.trigger_search_result.tolist()
            self.reference_info['trigger_search'] = dict(
                objective=self.trigger_search.get('objective', 'collapse'),
                start=round(start, 4), end=round(end, 4))

    @torch.no_grad()
    def search_custom_trigger(self, encoder: str = 'suspect') -> dict:
        """Replace the custom pattern by the one ``encoder`` reacts to most (rank 0's).

        Args:
            encoder (str): ``'suspect'`` (f0, before stage 1) or ``'backbone'`` (the encoder
                being trained: the warm-started repeats of ``CustomTriggerSearchHook``).

        Returns:
            dict: The search's objective before and after (see ``search_patch_pattern``).
        """
        from mmengine.dist import broadcast, is_distributed

        from ..defenses.trigger_search import search_patch_pattern
        if self.trigger_search is None or self.search_images is None:
            raise RuntimeError('trigger_search is not configured or the defense data is not '
                               'loaded (ReferenceSetHook runs first)')
        cfg = {k: v for k, v in self.trigger_search.items()
               if k not in ('max_images', 'restarts_steps')}
        cfg.setdefault('seed', self.seed + int(self.step))
        if encoder != 'suspect' and 'restarts_steps' in self.trigger_search:
            cfg['steps'] = self.trigger_search['restarts_steps']
        with torch.enable_grad():
            pattern, info = search_patch_pattern(getattr(self, encoder), self.normalizer,
                                                 self.search_images, self.custom_trigger, **cfg)
        pattern = pattern.to(self.custom_trigger.pattern)
        if is_distributed():
            broadcast(pattern, 0)
        self.custom_trigger.pattern.copy_(pattern)
        return info

    def _cos(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The loss cosine: on centered features when ``center_features``."""
        if self.feature_center is None:
            return cosine(a, b)
        c = self.feature_center.to(a)
        return cosine(a - c, b - c)

    def _encode_suspect(self, imgs: torch.Tensor) -> torch.Tensor:
        return self.encode_batched(self.suspect, imgs)

    @torch.no_grad()
    def start_unlearning(self) -> None:
        """Stage 1 -> 2: snapshot ``f1`` as the frozen teacher; ``f2`` continues from ``f1``."""
        self.sync_frozen(['teacher'])
        self.stage.fill_(2)

    # losses ------------------------------------------------------------------------------
    def _stamp(self, imgs: torch.Tensor, gen: torch.Generator, fraction: float = 1.):
        out = self.custom_trigger(imgs, generator=gen)
        if fraction >= 1.:
            return out
        keep = torch.rand(len(imgs), generator=gen, device=imgs.device) < fraction
        return torch.where(keep[:, None, None, None], out, imgs)

    def _repel(self, cos: torch.Tensor) -> torch.Tensor:
        if self.repulsion == 'cosine':
            return cos
        if self.repulsion == 'hinge':
            return (cos - self.hinge_margin).clamp_min(0)
        return cos ** 2

    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if self.reference is None:
            raise RuntimeError('BMAIU reference set is not chosen: add ReferenceSetHook to '
                               'custom_hooks')
        gen = self.step_generator(imgs.device)
        ref = sample_rows(self.reference.to(imgs.device), len(imgs), gen)
        return self._implant_loss(imgs, ref, gen) if int(self.stage) == 1 else \
            self._unlearn_loss(imgs, ref, gen)

    def _implant_loss(self, x, ref, gen):
        f1 = self.features(self.backbone, torch.cat([x, self._stamp(x, gen)]))
        f1_x, f1_xe = f1.chunk(2)
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
        # logged, not optimised: 1.0 = the custom trigger does not move the features at all
        losses['trigger_shift'] = cosine(f1_xe, f1_x).mean().detach()
        return losses

    def _unlearn_loss(self, x, ref, gen):
        xe = self._stamp(x, gen, self.trigger_fraction)
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

    # evaluation ---------------------------------------------------------------------------
    def probe_encoders(self) -> Dict[str, dict]:
        """Suspect ``f0``, implanted ``f1`` and defended ``f2``, for the probe loop.

        ``f1`` and ``f2`` are also probed with the custom trigger (target: the class the probe
        gives R), which checks that stage 1 implanted it and stage 2 removed it.
        """
        own = [dict(name='custom', trigger=self.custom_trigger, target=-1)]
        implanted = self.teacher if int(self.stage) == 2 else self.backbone
        out = dict(suspect=dict(encoder=self.suspect),
                   implanted=dict(encoder=implanted, triggers=own, reference=self.reference))
        if int(self.stage) == 2:
            out['defended'] = dict(encoder=self.backbone, triggers=own, reference=self.reference)
        return out

    @torch.no_grad()
    def probe_diagnostics(self, dataloader, normalizer, max_images: int = 2000) -> dict:
        """BTS and CCS of stage 1 (paper §4.2.3), with the baselines that make them readable.

        * ``BTS``: mean cos(f1(x + e), mean f1(R)); ``BTS_clean``: the same for clean x (a BTS
          rise that clean images share is drift, not implantation); ``BTS_gap`` = their difference.
        * ``CCS``: mean cos(f1(x), f0(x)) on clean x.
        * ``trigger_shift_f1`` / ``trigger_shift_f2``: mean cos(f(x + e), f(x)) in f1 / f2.
        """
        if self.reference is None:
            return {}
        f1 = self.teacher if int(self.stage) == 2 else self.backbone
        dev = self.step.device
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        imgs = []
        for batch in dataloader:
            x = batch['inputs']
            imgs.append(torch.stack(list(x)) if isinstance(x, (list, tuple)) else x)
            if sum(len(i) for i in imgs) >= max_images:
                break
        x = torch.cat(imgs)[:max_images].to(dev)
        feats = lambda enc, im: torch.cat([self.features(enc, im[i:i + 256])  # noqa: E731
                                           for i in range(0, len(im), 256)])
        xe = torch.cat([self.custom_trigger(x[i:i + 256], generator=gen)
                        for i in range(0, len(x), 256)])
        r1 = feats(f1, self.reference.to(dev)).mean(0, keepdim=True)
        f1_x, f1_xe, f0_x = feats(f1, x), feats(f1, xe), feats(self.suspect, x)
        out = dict(BTS=cosine(f1_xe, r1).mean().item(), BTS_clean=cosine(f1_x, r1).mean().item(),
                   CCS=cosine(f1_x, f0_x).mean().item(),
                   trigger_shift_f1=cosine(f1_xe, f1_x).mean().item())
        out['BTS_gap'] = out['BTS'] - out['BTS_clean']
        if int(self.stage) == 2:
            out['trigger_shift_f2'] = cosine(feats(self.backbone, xe),
                                             feats(self.backbone, x)).mean().item()
        out = {k: round(v, 4) for k, v in out.items()}
        out['reference'] = {k: v for k, v in self.reference_info.items() if k != 'indices'}
        return out
