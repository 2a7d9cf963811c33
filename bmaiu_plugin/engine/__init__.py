"""Runner components: the probe loop and the stage hooks."""
from .hooks import BMAIUStageHook, CustomTriggerSearchHook, ReferenceSetHook
from .loops import BackdoorProbeLoop
from .defense_hooks import EvaluatorTriggersHook, IBAUHook, SaveDefendedEncoderHook

__all__ = ['BackdoorProbeLoop', 'BMAIUStageHook', 'CustomTriggerSearchHook', 'ReferenceSetHook']
__all__ += ['EvaluatorTriggersHook', 'IBAUHook', 'SaveDefendedEncoderHook']
from .sslcleanse_hook import SSLCleanseDetectHook  # noqa: E402
__all__ += ['SSLCleanseDetectHook']
