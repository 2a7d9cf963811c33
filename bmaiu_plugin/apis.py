"""Helpers shared by the plugin's command-line tools."""
import os.path as osp
import sys
from typing import Callable

import torch
from mmengine.config import Config

from .utils.errors import BMAIUError, CheckpointError, ConfigValueError
from .utils.validate import check_config


def _replace_norm(node, old: str, new: str) -> None:
    """Replace ``type=old`` by ``type=new`` in every dict of a config subtree."""
    if isinstance(node, dict):
        if node.get('type') == old:
            node['type'] = new
        for v in node.values():
            _replace_norm(v, old, new)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _replace_norm(v, old, new)


def apply_speed_switches(cfg: Config) -> None:
    """Turn the top-level speed flags of ``cfg`` into components, in place and idempotently.

    ``bf16_autocast=True`` makes the ``OptimWrapper`` an ``AutocastOptimWrapper`` (bf16 where
    the device computes it natively, float32 elsewhere); ``channels_last=True`` adds one
    ``ChannelsLastHook``. :func:`finalize_config` calls it; scripts that build a runner from a
    config themselves (e.g. ``benchmarks/bench_peer.py``) call it to get the same settings.

    Args:
        cfg (Config): A loaded config.

    Raises:
        ConfigValueError: A flag that is not a bool, or ``bf16_autocast`` with an optim wrapper
            other than ``OptimWrapper``.
    """
    for key in ('bf16_autocast', 'channels_last'):
        if not isinstance(cfg.get(key, False), bool):
            raise ConfigValueError(f'{key} must be True or False, got {cfg[key]!r}')
    if cfg.get('bf16_autocast', False) and cfg.get('optim_wrapper') is not None:
        kind = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if kind not in ('OptimWrapper', 'AutocastOptimWrapper'):
            raise ConfigValueError(f'bf16_autocast=True needs optim_wrapper.type=OptimWrapper, '
                                   f'this config has {kind}; drop the flag or the wrapper')
        cfg.optim_wrapper.type = 'AutocastOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    if cfg.get('channels_last', False):
        hooks = list(cfg.get('custom_hooks', None) or [])
        if not any(isinstance(h, dict) and h.get('type') == 'ChannelsLastHook' for h in hooks):
            cfg.custom_hooks = hooks + [dict(type='ChannelsLastHook')]


def finalize_config(cfg: Config) -> Config:
    """Apply the plugin's run-time conventions to a loaded config.

    * ``custom_imports`` given with ``--cfg-options`` are imported (a project's components).
    * ``gloo`` instead of ``nccl``, DDP without ``device_ids`` and ``BN`` for ``SyncBN`` when
      there is no GPU (CPU runs with ``--launcher pytorch``).
    * ``evaluate_attack`` (a preset name or list, see :mod:`bmaiu_plugin.evaluation.presets`)
      becomes the probe loop's ``triggers``: the evaluator's knowledge of the attack.
    * The top-level ``encoder_checkpoint`` (what users pass with
      ``--cfg-options encoder_checkpoint=PATH``) is copied into every model dict that declares an
      ``encoder_checkpoint`` field, after checking the file exists.
    * The speed switches as two top-level flags, so that a pipeline or a command line can set
      them with ``--cfg-options`` (see :mod:`bmaiu_plugin.engine.perf`): ``bf16_autocast=True``
      turns the ``OptimWrapper`` into an ``AutocastOptimWrapper`` (bf16 where the device computes
      it natively, float32 elsewhere), ``channels_last=True`` adds a ``ChannelsLastHook``.
    * Pre-flight (:func:`~bmaiu_plugin.utils.validate.check_config`): every number finite, every
      component's ``type`` registered and its keys its arguments, the run's counts >= 1; a bad
      value is one :class:`~bmaiu_plugin.utils.errors.ConfigValueError` before any work starts.
    """
    import bmaiu_plugin  # noqa: F401  (registers components, applies the stack fixes)
    if cfg.get('custom_imports'):
        # a config file's own custom_imports ran when it loaded; these may come from
        # --cfg-options (e.g. a project's model, projects/*), which mmengine does not import
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    if not torch.cuda.is_available():
        if cfg.get('env_cfg', None) is not None:
            cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
        distributed = cfg.get('launcher', 'none') != 'none'
        if distributed and isinstance(cfg.get('model'), dict):
            # SyncBN (mmpretrain's SSL necks) exists on GPUs only: plain BN on CPU workers
            # (BN1d in the projection necks / heads, which see (N, C) features)
            for key in ('neck', 'head'):
                if key in cfg.model:
                    _replace_norm(cfg.model[key], 'SyncBN', 'BN1d')
            _replace_norm(cfg.model, 'SyncBN', 'BN')
        if distributed and cfg.get('model_wrapper_cfg') is None:
            # CPU DDP takes no device_ids (mmengine's default passes [LOCAL_RANK])
            cfg.model_wrapper_cfg = dict(
                type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                find_unused_parameters=cfg.get('find_unused_parameters', False))
    if 'encoder_checkpoint' in cfg:
        path = cfg.encoder_checkpoint
        if path in (None, ''):
            if not cfg.get('resume', False):
                raise ConfigValueError(
                    'this config starts from an existing encoder: pass '
                    '--cfg-options encoder_checkpoint=PATH (an mmengine checkpoint, a state '
                    'dict or a .safetensors file)')
        elif not osp.isfile(path):
            raise CheckpointError(f'encoder_checkpoint not found: {path}')
        if isinstance(cfg.get('model'), dict) and 'encoder_checkpoint' in cfg.model:
            cfg.model.encoder_checkpoint = path
    apply_speed_switches(cfg)
    if cfg.get('evaluate_attack', None):
        from .evaluation.presets import expand_attacks
        triggers = expand_attacks(cfg.evaluate_attack)
        for key in ('val_cfg', 'test_cfg'):
            if isinstance(cfg.get(key), dict) and cfg[key].get('type') == 'BackdoorProbeLoop':
                cfg[key].triggers = triggers
    check_config(cfg)
    return cfg


def run_cli(fn: Callable[[], object]) -> int:
    """Run ``fn``; turn a :class:`BMAIUError` into one ``error:`` line and exit status 2."""
    try:
        fn()
    except BMAIUError as e:
        print(f'error: {e}', file=sys.stderr, flush=True)
        return 2
    return 0
