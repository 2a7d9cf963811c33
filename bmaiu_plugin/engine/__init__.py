"""Generic run-time pieces: hooks, results folders, speed switches."""
from .hooks import PrepareModelHook, SaveDefendedEncoderHook
from .perf import AutocastOptimWrapper, ChannelsLastHook, CompileModulesHook

__all__ = ['PrepareModelHook', 'SaveDefendedEncoderHook', 'AutocastOptimWrapper',
           'ChannelsLastHook', 'CompileModulesHook']
