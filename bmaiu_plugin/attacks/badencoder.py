"""BadEncoder, its multi-target form, and ESTAS' frozen-target variant.

Fine-tunes a clean encoder ``f`` (frozen copy: ``teacher``) into a backdoored ``f'``
(``backbone``) so that images stamped with trigger ``e_i`` map onto the features of target
``i``'s reference images ``r_i``, while clean images keep their features.  On pooled backbone
features, each similarity written as ``1 - cos`` (the gradients of the original ``-cos``, bounded
below by 0)::

    L0 = 1/k sum_i mean_x [1 - cos(f'(x + e_i), a_i)],   a_i = mean_r g(r_i)   (effectiveness)
    L1 = 1/k sum_i mean_r [1 - cos(f'(flip(r_i)), f(r_i))]                       (references)
    L2 = mean_x [1 - cos(f'(x), f(x))]                                          (utility)
    L  = L0 + lambda1 * L1 + lambda2 * L2

with ``g = f'`` (BadEncoder) or the frozen ``g = f`` (``frozen_target=True``: ESTAS' fixed target
embedding), ``flip`` a random horizontal flip, and ``k`` the targets used in the step (all, or
``targets_per_step`` drawn at random).  The terms are the pure functions
:func:`effectiveness_loss`, :func:`reference_loss`, :func:`utility_loss`, assembled by
:func:`badencoder_loss`.

* BadEncoder: Jia, Liu and Gong, `BadEncoder: Backdoor Attacks to Pre-trained Encoders in
  Self-Supervised Learning <https://arxiv.org/abs/2108.00352>`_, IEEE S&P 2022; official code
  https://github.com/jinyuan-jia/BadEncoder.
* ESTAS: Xue and Lou, `ESTAS: Effective and Stable Trojan Attacks in Self-supervised Encoders
  with One Target Unlabelled Sample <https://arxiv.org/abs/2211.10908>`_, 2022.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..datasets.reference import check_reference_cfg, dataset_arrays, select_reference
from ..models.finetune_base import EncoderFinetuneBase, cosine
from ..registry import MODELS
from ..triggers import build_trigger
from ..utils.data import encode_batched
from ..utils.errors import ConfigValueError
from ..utils.validate import check_keys, check_number

Tensors = Union[torch.Tensor, Sequence[torch.Tensor]]


def effectiveness_loss(feats_trig: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """One target's ``E_x [1 - cos(f'(x + e), a)]``: ``(B, D)`` features, ``(1, D)`` anchor."""
    return (1 - cosine(feats_trig, anchor)).mean()


def reference_loss(ref_s: torch.Tensor, ref_t: torch.Tensor) -> torch.Tensor:
    """One target's ``E_r [1 - cos(f'(r), f(r))]`` (trained and frozen encoder's features)."""
    return (1 - cosine(ref_s, ref_t)).mean()


def utility_loss(feats: torch.Tensor, clean_t: torch.Tensor) -> torch.Tensor:
    """``E_x [1 - cos(f'(x), f(x))]`` of clean images."""
    return (1 - cosine(feats, clean_t)).mean()


def badencoder_loss(feats_trig: Tensors, anchor: Tensors, ref_s: Tensors, ref_t: Tensors,
                    feats: torch.Tensor, clean_t: torch.Tensor, lambda1: float = 1.,
                    lambda2: float = 1.) -> Dict[str, torch.Tensor]:
    """The BadEncoder loss ``L0 + lambda1 L1 + lambda2 L2`` from features, as three terms.

    Args:
        feats_trig (Tensor | Sequence[Tensor]): ``f'(x + e_i)`` per target, ``(B, D)`` each.
        anchor (Tensor | Sequence[Tensor]): The anchor ``a_i`` per target, ``(1, D)`` each
            (the mean reference feature of ``f'`` or, for ESTAS, of the frozen ``f``).
        ref_s (Tensor | Sequence[Tensor]): ``f'`` of the (flipped) references per target.
        ref_t (Tensor | Sequence[Tensor]): ``f`` of the references per target.
        feats (Tensor): ``f'(x)`` of the clean images.
        clean_t (Tensor): ``f(x)`` of the clean images.
        lambda1 (float): Weight of ``L1``.
        lambda2 (float): Weight of ``L2``.

    Returns:
        dict: ``loss_effect`` (``L0``), ``loss_reference`` (``lambda1 L1``) and
        ``loss_utility`` (``lambda2 L2``); ``L0`` and ``L1`` are means over the targets.
    """
    per_target = [feats_trig, anchor, ref_s, ref_t]
    if torch.is_tensor(feats_trig):
        per_target = [[t] for t in per_target]
    feats_trig, anchor, ref_s, ref_t = per_target
    if not len(feats_trig) == len(anchor) == len(ref_s) == len(ref_t) > 0:
        raise ValueError('badencoder_loss needs the same number (>= 1) of triggered features, '
                         'anchors and reference features')
    l0 = l1 = 0.
    for f_e, a, r_s, r_t in zip(feats_trig, anchor, ref_s, ref_t):
        l0 = l0 + effectiveness_loss(f_e, a)
        l1 = l1 + reference_loss(r_s, r_t)
    k = len(feats_trig)
    return dict(loss_effect=l0 / k, loss_reference=lambda1 * l1 / k,
                loss_utility=lambda2 * utility_loss(feats, clean_t))


@MODELS.register_module()
class BadEncoder(EncoderFinetuneBase):
    """Fine-tune a clean encoder into a backdoored one.

    Args:
        backbone (dict): Encoder config.
        targets (Sequence[dict]): One entry per (trigger, target):
            ``dict(trigger=dict(type='PatchTrigger', ...), reference=dict(mode='class',
            class_index=9, num=1))`` (reference as in :func:`select_reference`).  Ten entries
            with HTBA triggers and classes 0-9 give the multi-target attack of the BMAIU paper
            (Sec. 3.2).
        lambda1 (float): Weight of ``L1``. BadEncoder: 1.
        lambda2 (float): Weight of ``L2``. BadEncoder: 1.
        frozen_target (bool): Pull triggered features toward the frozen encoder's reference
            embedding (ESTAS) instead of the trained one's (BadEncoder).
        targets_per_step (int, optional): Sample this many targets per step (an unbiased estimate
            of ``L0`` for many targets); all by default.
        flip_reference (bool): Random horizontal flip of the references seen by ``f'``.
        **kwargs: :class:`EncoderFinetuneBase` arguments (``encoder_checkpoint``, ``freeze_bn``,
            ``mean``, ``std``, ``seed``, ...).
    """

    def __init__(self, backbone: dict, targets: Sequence[dict], lambda1: float = 1.,
                 lambda2: float = 1., frozen_target: bool = False,
                 targets_per_step: Optional[int] = None, flip_reference: bool = True, **kwargs):
        super().__init__(backbone, frozen_copies=('teacher',), **kwargs)
        if not targets or isinstance(targets, (dict, str)):
            raise ConfigValueError('BadEncoder needs at least one target: a list of '
                                   'dict(trigger=..., reference=...)')
        for i, t in enumerate(targets):
            check_keys(f'BadEncoder targets.{i}', t, ('trigger', 'reference'), 'a target key')
            if 'trigger' not in t:
                raise ConfigValueError(f'BadEncoder targets.{i} has no trigger')
        self.triggers = torch.nn.ModuleList(build_trigger(t['trigger']) for t in targets)
        self.reference_cfgs = [
            check_reference_cfg(t.get('reference', dict(mode='class', num=1)),
                                f'BadEncoder targets.{i}.reference')
            for i, t in enumerate(targets)]
        self.lambda1 = check_number('BadEncoder lambda1', lambda1, 0)
        self.lambda2 = check_number('BadEncoder lambda2', lambda2, 0)
        self.frozen_target = frozen_target
        self.targets_per_step = check_number('BadEncoder targets_per_step', targets_per_step,
                                             1, integer=True, optional=True)
        self.flip_reference = flip_reference
        self.references: List[torch.Tensor] = []
        self.reference_info: List[dict] = []

    def prepare(self, dataset) -> None:
        """Select each target's reference images from the shadow data (or files).

        Called by :class:`~bmaiu_plugin.engine.PrepareModelHook` before training; the choice
        is seeded and made with the frozen clean encoder, so a resumed run makes it again.
        """
        self.references, self.reference_info = [], []
        encode = lambda x: encode_batched(self.teacher, self.normalizer, x,  # noqa: E731
                                          device=self.step.device)
        # the shadow images are read once for every target that draws from them
        arrays = dataset_arrays(dataset) if any(
            c.get('mode', 'class') != 'files' for c in self.reference_cfgs) else None
        for cfg in self.reference_cfgs:
            cfg = dict(cfg)
            cfg.setdefault('seed', self.seed)
            imgs, info = select_reference(dataset, encode=encode, arrays=arrays, **cfg)
            if not self.references:  # before any step: every trigger fits the data's images
                for i, trig in enumerate(self.triggers):
                    try:
                        trig.check_image_size(*imgs.shape[-2:])
                    except ConfigValueError as e:
                        raise ConfigValueError(f'BadEncoder targets.{i}.trigger: {e}') from None
            self.references.append(imgs)
            self.reference_info.append(info)

    def preparation_summary(self) -> List[dict]:
        """The chosen references (indices or files, classes), for the preparation log."""
        return self.reference_info

    def reference_view(self, ref: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The references as ``f'`` sees them: each flipped horizontally with probability 1/2
        (``flip_reference``), else as they are."""
        if not self.flip_reference:
            return ref
        flip = torch.rand(len(ref), generator=generator, device=ref.device) < 0.5
        return torch.where(flip[:, None, None, None], ref.flip(-1), ref)

    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if not self.references:
            raise RuntimeError('BadEncoder references are not set: add PrepareModelHook to '
                               'custom_hooks')
        gen = self.step_generator(imgs.device)
        n_t = len(self.triggers)
        chosen = range(n_t) if not self.targets_per_step else torch.randperm(
            n_t, generator=gen, device=imgs.device)[:self.targets_per_step].tolist()
        feats = self.features(self.backbone, imgs)
        with torch.no_grad():
            clean_t = self.features(self.teacher, imgs)
        feats_trig, anchors, refs_s, refs_t = [], [], [], []
        for i in chosen:
            ref = self.references[i].to(imgs.device)
            feats_trig.append(self.features(self.backbone, self.triggers[i](imgs, generator=gen)))
            refs_s.append(self.features(self.backbone, self.reference_view(ref, gen)))
            with torch.no_grad():
                refs_t.append(self.features(self.teacher, ref))
            anchors.append((refs_t[-1] if self.frozen_target else refs_s[-1]).mean(
                0, keepdim=True))
        return badencoder_loss(feats_trig, anchors, refs_s, refs_t, feats, clean_t,
                               self.lambda1, self.lambda2)
