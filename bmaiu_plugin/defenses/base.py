"""The interface every defense implements (see ``docs/architecture.md``).

A defense receives a suspect encoder (``encoder_checkpoint``) and its own clean defense data, and
produces a defended encoder.  It never receives the attacker's trigger or target: those belong to
the evaluator (the probe loop's ``triggers``), which scores what the defense exposes here.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from ..models.finetune_base import EncoderFinetuneBase

#: The probe's name of a defense's own trigger (BMAIU's custom trigger, the searched patch);
#: further own triggers are ``custom-<name>``.  The evaluator's tables keep these apart from the
#: attacker's triggers (:func:`is_own_trigger`).
OWN_TRIGGER = 'custom'


def own_trigger_name(name: Optional[str] = None) -> str:
    """``custom`` or ``custom-<name>``: how a defense names a trigger of its own to the probe."""
    return OWN_TRIGGER if name is None else f'{OWN_TRIGGER}-{name}'


def is_own_trigger(name: str) -> bool:
    """Whether a probe entry's trigger is the defense's own (:func:`own_trigger_name`), not
    one of the attacker's."""
    return name == OWN_TRIGGER or name.startswith(OWN_TRIGGER + '-')


class BaseDefense(EncoderFinetuneBase):
    """Base class of the defenses: a suspect encoder in, a defended encoder out.

    Subclasses keep the suspect as a frozen copy named ``suspect`` and the defended encoder as
    ``backbone`` (trained or edited).  The methods below are the whole contract with the
    run-time: :class:`~bmaiu_plugin.engine.hooks.PrepareModelHook` calls :meth:`prepare`, the
    :class:`~bmaiu_plugin.evaluation.loop.BackdoorProbeLoop` calls :meth:`probe_encoders`,
    :meth:`probe_classifiers` and :meth:`defense_report`, and
    :class:`~bmaiu_plugin.engine.hooks.SaveDefendedEncoderHook` calls
    :meth:`defended_state_dict`.

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        **kwargs: :class:`~bmaiu_plugin.models.finetune_base.EncoderFinetuneBase` arguments.
    """

    def prepare(self, dataset) -> None:
        """Prepare on the defense data before training (default: nothing to prepare).

        Args:
            dataset: The training dataset (the defender's clean data).
        """

    def probe_encoders(self) -> Dict[str, dict]:
        """Encoders for the probe loop: ``{name: dict(encoder=..., triggers=[...],
        reference=...)}``; ``triggers`` and ``reference`` are the defense's own (optional).

        Default: the ``suspect`` as loaded and the ``defended`` encoder.
        """
        return dict(suspect=dict(encoder=self.suspect), defended=dict(encoder=self.backbone))

    def probe_classifiers(self) -> Dict[str, Tuple[nn.Module, nn.Module]]:
        """Classifiers the defense built itself, ``{name: (encoder, head)}``, which the probe loop
        scores with the evaluator's triggers (BA / ASR / PA of the classifier as it is).
        Default: none."""
        return {}

    def defended_state_dict(self) -> Dict[str, torch.Tensor]:
        """The defended encoder's backbone state dict."""
        return self.backbone.state_dict()

    def defense_report(self) -> dict:
        """A JSON-able account of what the defense did, written into ``metrics.json``."""
        return {}
