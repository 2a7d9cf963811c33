"""The fine-tuning-only control: a defense's budget with no trigger terms.

What an unlearning defense removes has to be told apart from what any fine-tuning of the suspect
removes.  This control runs on the same defense data, epochs, optimizer and clean-consistency
loss as the unlearning defenses, with their trigger terms left out::

    L = u0 * mean [1 - cos(f(x), f0(x))]

with ``f0`` the frozen suspect.  A backdoor the defenses remove and this control keeps was
removed by their trigger terms.
"""
from typing import Dict

import torch

from ..models.finetune_base import cosine
from ..registry import MODELS
from ..utils.validate import check_number
from .base import BaseDefense

__all__ = ['FineTuneControl']


@MODELS.register_module()
class FineTuneControl(BaseDefense):
    """Fine-tune the suspect with the clean-consistency loss only.

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        u0 (float): Weight of the clean consistency (as in the unlearning defenses).
        **kwargs: :class:`~bmaiu_plugin.models.finetune_base.EncoderFinetuneBase` arguments
            (``encoder_checkpoint``, ``freeze_bn``, ``mean``, ``std``, ``seed``).
    """

    def __init__(self, backbone: dict, u0: float = 1., **kwargs):
        super().__init__(backbone, frozen_copies=('suspect',), **kwargs)
        self.u0 = float(check_number('FineTuneControl u0', u0, 0, inclusive=(False, True)))

    def loss(self, imgs: torch.Tensor, data_samples=None) -> Dict[str, torch.Tensor]:
        f = self.features(self.backbone, imgs)
        with torch.no_grad():
            f0 = self.features(self.suspect, imgs)
        return dict(loss_consistency=self.u0 * (1 - cosine(f, f0)).mean())
