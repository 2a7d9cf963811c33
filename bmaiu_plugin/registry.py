"""Registry nodes.

Plugin classes register straight into mmpretrain's nodes (``MODELS``, ``HOOKS``, ``LOOPS``,
``DATASETS``, ``TRANSFORMS``, ...) so they mix with mmpretrain types under
``default_scope='mmpretrain'``.  Triggers are a kind mmpretrain has no node for, so they get one
of their own here.
"""
from mmengine.registry import Registry
from mmpretrain.registry import (DATA_SAMPLERS, DATASETS, HOOKS, LOOPS, METRICS, MODELS,
                                 TRANSFORMS)

#: Backdoor triggers: patch (fixed/random position, pattern or image file) and CTRL frequency.
TRIGGERS = Registry('trigger', scope='mmpretrain', locations=['bmaiu_plugin.triggers'])

__all__ = ['TRIGGERS', 'MODELS', 'HOOKS', 'LOOPS', 'DATASETS', 'TRANSFORMS', 'METRICS',
           'DATA_SAMPLERS']
