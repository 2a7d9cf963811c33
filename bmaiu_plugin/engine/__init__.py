"""Runner components: the probe loop and the stage hooks."""
from .hooks import BMAIUStageHook, ReferenceSetHook
from .loops import BackdoorProbeLoop

__all__ = ['BackdoorProbeLoop', 'BMAIUStageHook', 'ReferenceSetHook']
