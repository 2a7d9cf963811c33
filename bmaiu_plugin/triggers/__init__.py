"""Backdoor triggers, applied as batched tensor ops in pixel space (0-255, before normalization)."""
from .base import BaseTrigger, build_trigger
from .blend import BlendTrigger
from .ctrl import CTRLTrigger
from .patch import PatchTrigger, RandomPatchFamily
from .transforms import ApplyTrigger
from .warp import WarpTrigger

__all__ = ['BaseTrigger', 'build_trigger', 'PatchTrigger', 'RandomPatchFamily', 'CTRLTrigger',
           'BlendTrigger', 'WarpTrigger', 'ApplyTrigger']
