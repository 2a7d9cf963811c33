"""BMAIU: Backdoor Mitigation through Active Implantation and Unlearning.

Zhang et al., "BMAIU: Backdoor Mitigation in Self-Supervised Learning Through Active
Implantation and Unlearning", *Electronics* 14(8):1587, 2025, §3.4, Algorithms 1-2.
``f0`` is the suspect (``self.suspect``, frozen), ``e`` the defender's custom trigger, ``t_j`` a
reference image drawn from R for each sample, ``cos`` the cosine of pooled features.

Stage 1, implantation (``f1`` = ``self.backbone``)::

    L_attack = mean [1 - cos(f1(x), f0(x))]                        L_consistency
             + u1 * mean [1 - cos(f1(x + e), f0(t_j))]              L_effective
             + u1 * mean [1 - cos(f1(t_j), f0(t_j))]                R anchored (BadEncoder's L1)

Stage 2, unlearning (``f1`` frozen as ``self.teacher``; ``f2`` = ``self.backbone``)::

    L_unlearn = u2 * mean [1 - cos(f2(x + e), f1(x))]              L1: the trigger stops mattering
              + u3 * mean cos(f2(x + e), f1(t_j))                   L2: away from the target
              + u0 * mean [1 - cos(f2(x), f1(x))]                   L0: clean features kept

The paper writes each term as a minimised similarity ``s``; the reading under which every term
does what the paper says is ``s = 1 - cos`` for the terms to keep and ``+cos`` for the repulsion.
The implantation target is the fixed ``f0(t_j)`` and the repulsion anchor the fixed
``f1(t_j)``, not the paper's trainable ``f1(t_j)`` / ``f2(t_j)``: docs/bmaiu.md gives the
derivation and the measurements behind both choices.

The custom trigger ``e`` and R are the defense's own; the attacker's trigger is never an input
of this model (only the evaluator's ``val_cfg.triggers`` know it).
"""
from typing import Dict, Optional

import torch
import torch.nn as nn
from mmengine.hooks import Hook

from ..datasets.reference import check_reference_cfg, select_reference
from ..models.finetune_base import cosine, sample_rows
from ..registry import HOOKS, MODELS
from ..triggers import build_trigger
from ..utils.data import encode_batched, unwrap_model
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number, is_number
from .base import BaseDefense, own_trigger_name

__all__ = ['BMAIU', 'BMAIUStageHook', 'unlearning_losses', 'build_custom_trigger']


def unlearning_losses(features, student: nn.Module, teacher: nn.Module, x: torch.Tensor,
                      xe: torch.Tensor, ref: torch.Tensor, u0: float, u2: float,
                      u3: float) -> Dict[str, torch.Tensor]:
    """BMAIU's stage-2 loss (Algorithm 2): unlearn the trigger that turned ``x`` into ``xe``.

    Args:
        features (callable): ``features(encoder, imgs)``: pooled features of pixel-space images.
        student (nn.Module): ``f2``, the encoder being trained.
        teacher (nn.Module): ``f1``, frozen.
        x, xe, ref (Tensor): Clean images, the same stamped with the trigger, and one reference
            image per sample.
        u0, u2, u3 (float): Weights of L0, L1, L2.

    Returns:
        dict: ``loss_invariance`` (u2 L1), ``loss_repulsion`` (u3 L2), ``loss_consistency``
        (u0 L0) and the logged ``trigger_shift`` = mean cos(f2(x + e), f2(x)) (detached).
    """
    f2_x, f2_xe = features(student, torch.cat([x, xe])).chunk(2)
    with torch.no_grad():
        f1_x = features(teacher, x)
        f1_r = features(teacher, ref)
    return dict(loss_invariance=u2 * (1 - cosine(f2_xe, f1_x)).mean(),
                loss_repulsion=u3 * cosine(f2_xe, f1_r).mean(),
                loss_consistency=u0 * (1 - cosine(f2_x, f1_x)).mean(),
                trigger_shift=cosine(f2_xe, f2_x).mean().detach())


def build_custom_trigger(cfg: dict, img_size: Optional[int], what: str) -> nn.Module:
    """A defense's own trigger from its config; a patch's image size checked at build time."""
    cfg = dict(cfg)
    if img_size is not None and cfg.get('type') in ('PatchTrigger', 'RandomPatchFamily'):
        cfg.setdefault('img_size', img_size)
    try:
        return build_trigger(cfg)
    except ConfigValueError as e:
        raise ConfigValueError(f'{what}: {e}') from None


@MODELS.register_module()
class BMAIU(BaseDefense):
    """The BMAIU defense, both stages (the switch is :class:`BMAIUStageHook`'s).

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        custom_trigger (dict): The defender's trigger ``e``. Paper: a random 4x4 patch at a
            random position (16x16 on ImageNet-100).
        reference (dict): How R is chosen
            (:func:`~bmaiu_plugin.datasets.reference.select_reference`):
            ``mode`` ``'random_class'`` (default, labels needed), ``'kmeans'`` (label-free) or
            ``'files'``; ``num`` images.
        u0 (float): Weight of stage 2's L0 (clean consistency). Paper: 1 (0: Table 8's ablation).
        u1 (float): Weight of stage 1's L_effective. Paper: 1.
        u2 (float): Weight of stage 2's L1 (trigger invariance). Paper: 10.
        u3 (float): Weight of stage 2's L2 (repulsion). Paper: "moderate".
        img_size (int, optional): Image side, to check the trigger fits at build time.
        **kwargs: :class:`~bmaiu_plugin.models.finetune_base.EncoderFinetuneBase` arguments
            (``encoder_checkpoint``, ``freeze_bn``, ``mean``, ``std``, ``seed``).
    """

    def __init__(self, backbone: dict,
                 custom_trigger: dict = dict(type='PatchTrigger', size=4, pattern='random',
                                             position='random', seed=2025),
                 reference: dict = dict(mode='random_class', num=10),
                 u0: float = 1., u1: float = 1., u2: float = 10., u3: float = 1.,
                 img_size: Optional[int] = 32, **kwargs):
        super().__init__(backbone, frozen_copies=('suspect', 'teacher'), **kwargs)
        for name, v in dict(u0=u0, u1=u1, u2=u2, u3=u3).items():
            check_number(f'BMAIU {name}', v, 0)
        check_number('BMAIU img_size', img_size, 1, integer=True, optional=True)
        self.custom_trigger = build_custom_trigger(custom_trigger, img_size, 'BMAIU custom_trigger')
        self.reference_cfg = check_reference_cfg(reference, 'BMAIU reference')
        self.u0, self.u1, self.u2, self.u3 = float(u0), float(u1), float(u2), float(u3)
        self.register_buffer('stage', torch.ones((), dtype=torch.long))
        self.reference: Optional[torch.Tensor] = None
        self.reference_info: dict = {}

    # preparation ------------------------------------------------------------------------
    def prepare(self, dataset) -> None:
        """Choose R from the defense data (labels, k-means on ``f0`` features, or files)."""
        cfg = dict(self.reference_cfg)
        cfg.setdefault('seed', self.seed)
        self.reference, self.reference_info = select_reference(
            dataset, encode=self._encode_suspect, **cfg)

    def _encode_suspect(self, imgs: torch.Tensor) -> torch.Tensor:
        return encode_batched(self.suspect, self.normalizer, imgs, device=self.step.device)

    @torch.no_grad()
    def start_unlearning(self) -> None:
        """Stage 1 -> 2: snapshot ``f1`` as the frozen teacher; ``f2`` continues from ``f1``."""
        self.sync_frozen(['teacher'])
        self.stage.fill_(2)

    # losses -----------------------------------------------------------------------------
    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        if self.reference is None:
            raise RuntimeError('BMAIU reference set is not chosen: add PrepareModelHook to '
                               'custom_hooks')
        gen = self.step_generator(imgs.device)
        ref = sample_rows(self.reference.to(imgs.device), len(imgs), gen)
        xe = self.custom_trigger(imgs, generator=gen)
        if int(self.stage) == 1:
            return self.implant_losses(imgs, xe, ref)
        return unlearning_losses(self.features, self.backbone, self.teacher, imgs, xe, ref,
                                 self.u0, self.u2, self.u3)

    def implant_losses(self, x: torch.Tensor, xe: torch.Tensor,
                       ref: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Stage 1's ``L_attack`` (Algorithm 1) and the logged ``trigger_shift``."""
        f1_x, f1_xe = self.features(self.backbone, torch.cat([x, xe])).chunk(2)
        with torch.no_grad():
            f0_x = self.features(self.suspect, x)
            f0_r = self.features(self.suspect, ref)
        f1_r = self.features(self.backbone, ref)
        return dict(loss_consistency=(1 - cosine(f1_x, f0_x)).mean(),
                    loss_anchor=self.u1 * (1 - cosine(f1_r, f0_r)).mean(),
                    loss_effective=self.u1 * (1 - cosine(f1_xe, f0_r)).mean(),
                    # 1.0 = the custom trigger does not move the features at all
                    trigger_shift=cosine(f1_xe, f1_x).mean().detach())

    # the defense interface --------------------------------------------------------------
    def probe_encoders(self) -> Dict[str, dict]:
        """Suspect ``f0``, implanted ``f1`` and (in stage 2) defended ``f2``.

        ``f1`` and ``f2`` are also probed with the custom trigger (target: the class the probe
        gives R), which checks that stage 1 implanted it and stage 2 removed it.
        """
        own = [dict(name=own_trigger_name(), trigger=self.custom_trigger, target=-1)]
        implanted = self.teacher if int(self.stage) == 2 else self.backbone
        out = dict(suspect=dict(encoder=self.suspect),
                   implanted=dict(encoder=implanted, triggers=own, reference=self.reference))
        if int(self.stage) == 2:
            out['defended'] = dict(encoder=self.backbone, triggers=own, reference=self.reference)
        return out

    def defense_report(self) -> dict:
        """How R was chosen (without the image indices)."""
        return dict(reference={k: v for k, v in self.reference_info.items() if k != 'indices'})

    def preparation_summary(self) -> dict:
        return self.defense_report()


@HOOKS.register_module()
class BMAIUStageHook(Hook):
    """Switch BMAIU from implantation (stage 1) to unlearning (stage 2).

    At the start of epoch ``implant_epochs`` (0-based), if the model is still in stage 1: snapshot
    ``f1`` as the frozen teacher, set stage 2, and clear the optimizer state (momentum of stage 1
    must not push stage 2).  The learning-rate schedule of each stage is an ordinary
    ``param_scheduler`` list with ``begin``/``end`` epochs.  The stage and the teacher are part of
    the model's state dict, so a run resumed in stage 2 does not switch again.

    Args:
        implant_epochs (int): Epochs of stage 1.
    """

    priority = 'HIGH'

    def __init__(self, implant_epochs: int):
        self.implant_epochs = check_number('BMAIUStageHook implant_epochs', implant_epochs, 0,
                                           integer=True)

    @staticmethod
    def check_cfg(cfg: dict, config, path: str) -> None:
        """Pre-flight: stage 2 must get at least one of the run's epochs."""
        implant = cfg.get('implant_epochs')
        max_epochs = (config.get('train_cfg') or {}).get('max_epochs')
        if is_number(implant) and is_number(max_epochs) and implant >= max_epochs:
            raise ConfigValueError(
                f'{path}.implant_epochs={implant} >= train_cfg.max_epochs={max_epochs} leaves '
                'BMAIU stage 2 (unlearning) without epochs; give train_cfg.max_epochs = '
                'implant epochs + unlearning epochs (and train_cfg.val_interval the same)')

    def before_train(self, runner) -> None:
        if self.implant_epochs >= runner.max_epochs:
            raise ConfigValueError(
                f'BMAIUStageHook implant_epochs={self.implant_epochs} >= max_epochs='
                f'{runner.max_epochs} leaves BMAIU stage 2 (unlearning) without epochs')

    def before_train_epoch(self, runner) -> None:
        model = unwrap_model(runner)
        if runner.epoch >= self.implant_epochs and int(model.stage) == 1:
            model.start_unlearning()
            runner.optim_wrapper.optimizer.state.clear()
            runner.logger.info(f'BMAIU: stage 2 (unlearning) from epoch {runner.epoch + 1}; '
                               'f1 frozen as teacher, optimizer state reset')
