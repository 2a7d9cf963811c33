"""BadEncoder (Jia et al., S&P 2022), its multi-target form, and the ESTAS-style variant.

Losses on pooled backbone features, each as ``1 - cos`` (the same gradients as BadEncoder's
``-cos``, bounded below by 0); ``f'`` is the trained encoder, ``f`` the frozen clean one:

* effectiveness ``L0 = mean_i mean_x [1 - cos(f'(x + e_i), g(r_i))]`` where ``g`` is ``f'``
  (BadEncoder) or the frozen ``f`` (``frozen_target=True``: ESTAS' frozen target embedding);
* effectiveness-2 ``L1 = mean_i [1 - cos(f'(aug r_i), f(r_i))]`` (the reference keeps its place);
* utility ``L2 = mean_x [1 - cos(f'(x), f(x))]``;
* ``L = L0 + lambda1 L1 + lambda2 L2``.
"""
from typing import Dict, List, Optional, Sequence

import torch

from ..registry import MODELS
from ..triggers import build_trigger
from ..utils.errors import ConfigValueError
from ..utils.validate import check_keys, check_number
from .finetune_base import EncoderFinetuneBase, cosine
from .reference import check_reference_cfg, select_reference


@MODELS.register_module()
class BadEncoder(EncoderFinetuneBase):
    """Fine-tune a clean encoder into a backdoored one.

    Args:
        backbone (dict): Encoder config.
        targets (Sequence[dict]): One entry per (trigger, target):
            ``dict(trigger=dict(type='PatchTrigger', ...), reference=dict(mode='class',
            class_index=9, num=1))`` (reference as in :func:`select_reference`).  Ten entries
            with HTBA triggers and classes 0-9 give the multi-target attack of BMAIU's §3.2.
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

    def prepare_reference(self, dataset) -> None:
        """Select each target's reference images from the shadow data (or files)."""
        self.references, self.reference_info = [], []
        for cfg in self.reference_cfgs:
            cfg = dict(cfg)
            cfg.setdefault('seed', self.seed)
            imgs, info = select_reference(
                dataset, encode=lambda x: self.encode_batched(self.teacher, x), **cfg)
            if not self.references:  # before any step: every trigger fits the data's images
                for i, trig in enumerate(self.triggers):
                    try:
                        trig.check_image_size(*imgs.shape[-2:])
                    except ConfigValueError as e:
                        raise ConfigValueError(f'BadEncoder targets.{i}.trigger: {e}') from None
            self.references.append(imgs)
            self.reference_info.append(info)

    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if not self.references:
            raise RuntimeError('BadEncoder references are not set: add ReferenceSetHook to '
                               'custom_hooks')
        gen = self.step_generator(imgs.device)
        n_t = len(self.triggers)
        chosen = range(n_t) if not self.targets_per_step else torch.randperm(
            n_t, generator=gen, device=imgs.device)[:self.targets_per_step].tolist()
        feats = self.features(self.backbone, imgs)
        with torch.no_grad():
            clean_t = self.features(self.teacher, imgs)
        l0 = l1 = 0.
        for i in chosen:
            ref = self.references[i].to(imgs.device)
            trig_f = self.features(self.backbone, self.triggers[i](imgs, generator=gen))
            ref_in = ref
            if self.flip_reference:
                flip = torch.rand(len(ref), generator=gen, device=imgs.device) < 0.5
                ref_in = torch.where(flip[:, None, None, None], ref.flip(-1), ref)
            ref_s = self.features(self.backbone, ref_in)
            with torch.no_grad():
                ref_t = self.features(self.teacher, ref)
            anchor = (ref_t if self.frozen_target else ref_s).mean(0, keepdim=True)
            l0 = l0 + (1 - cosine(trig_f, anchor)).mean()
            l1 = l1 + (1 - cosine(ref_s, ref_t)).mean()
        k = len(chosen)
        l2 = (1 - cosine(feats, clean_t)).mean()
        return dict(loss_effect=l0 / k, loss_reference=self.lambda1 * l1 / k,
                    loss_utility=self.lambda2 * l2)
