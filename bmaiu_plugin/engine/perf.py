"""Speed switches by config: bf16 autocast on any device, channels-last, compiled modules.

* ``optim_wrapper = dict(type='AutocastOptimWrapper', dtype='bfloat16', optimizer=...)``: the
  forward pass (data preprocessor excluded: it augments in float32) runs under
  ``torch.autocast(device, bfloat16)`` where the device computes bf16 natively (a GPU with
  bf16 support, a CPU with AVX512-BF16 or AMX) and in float32 elsewhere, where emulated bf16
  runs several times slower (``native_only=False`` forces it).  Unlike mmengine's
  ``AmpOptimWrapper`` it works on the CPU too and has no loss scaler (bf16 has fp32's exponent
  range), so it adds no host synchronization per step.  On GPUs mmengine's
  ``AmpOptimWrapper(dtype='bfloat16')`` works as well (with a GradScaler whose inf check syncs
  once per step).
* ``custom_hooks = [dict(type='ChannelsLastHook')]``: model weights (and the views of a
  :class:`~bmaiu_plugin.models.data_preprocessor.DeviceMultiViewPreprocessor`) in
  ``torch.channels_last`` memory format, which cuDNN's tensor-core convolutions prefer.
* ``custom_hooks = [dict(type='CompileModulesHook', modules=('backbone', 'neck'))]``:
  ``torch.compile`` of the named submodules in place (``nn.Module.compile``: state-dict keys and
  checkpoints unchanged).  mmengine's own ``compile = True`` compiles the whole
  ``model.train_step`` instead (data preprocessor and optimizer step included), which breaks the
  graph at every random generator / Python-side branch and compiles far longer.
"""
from contextlib import contextmanager
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmpretrain.registry import HOOKS, OPTIM_WRAPPERS

from ..utils.data import unwrap_model


def model_device_type(model: nn.Module) -> str:
    """Device type of the model's first parameter (``'cpu'`` for a parameterless model)."""
    p = next(model.parameters(), None)
    return p.device.type if p is not None else 'cpu'


#: CPU feature checks of torch (``torch.cpu``) that mean native bf16 matrix arithmetic.
_CPU_BF16_CHECKS = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` computes bfloat16 natively, so that autocasting to it pays.

    CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later).  CPU: AVX512-BF16 or AMX
    (oneDNN's bf16 kernels); without them bf16 is emulated and slower than float32.  Other
    devices: ``False``.
    """
    if device_type == 'cuda':
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == 'cpu':
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in _CPU_BF16_CHECKS)
    return False


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose ``optim_context`` autocasts to bfloat16 on the model's device.

    Args:
        dtype (str | torch.dtype): ``'bfloat16'`` (float16 needs loss scaling: use mmengine's
            ``AmpOptimWrapper``).
        native_only (bool): Autocast only where the device computes bf16 natively
            (:func:`native_bf16`), float32 elsewhere (logged once).  Defaults to True.
        **kwargs: ``OptimWrapper`` arguments (``optimizer``, ``clip_grad``, ...).
    """

    def __init__(self, dtype='bfloat16', native_only: bool = True, **kwargs):
        super().__init__(**kwargs)
        dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if dtype != torch.bfloat16:
            raise ValueError(f'AutocastOptimWrapper supports bfloat16 only, got {dtype}')
        self.cast_dtype = dtype
        self.native_only = bool(native_only)
        #: Whether the forward pass autocasts; decided on the first step from the device.
        self.autocast: Optional[bool] = None

    def autocast_enabled(self, device_type: str) -> bool:
        """Decide (once) whether to autocast on ``device_type``; log the decision."""
        if self.autocast is None:
            self.autocast = not self.native_only or native_bf16(device_type)
            how = ('bf16 autocast' if self.autocast else
                   f'float32 (no native bf16 on this {device_type}: autocast would be slower)')
            print_log(f'AutocastOptimWrapper: {how}', logger='current')
        return self.autocast

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = model_device_type(model)
        with super().optim_context(model):
            with torch.autocast(device, dtype=self.cast_dtype,
                                enabled=self.autocast_enabled(device)):
                yield


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert 4-D parameters and buffers to ``channels_last`` in place; set the data
    preprocessor's ``channels_last`` flag where it has one."""
    model.to(memory_format=torch.channels_last)
    dp = getattr(model, 'data_preprocessor', None)
    if dp is not None and hasattr(dp, 'channels_last'):
        dp.channels_last = True
    return model


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Switch the model (and its device-view preprocessor) to ``channels_last`` before training.

    With a DDP-wrapped model only the preprocessor's views are switched (the weights' layout is
    fixed once DDP has built its gradient buckets); cuDNN then still picks channels-last kernels
    from the inputs' layout.
    """

    priority = 'VERY_HIGH'

    def before_run(self, runner) -> None:
        if is_model_wrapper(runner.model):
            dp = getattr(runner.model.module, 'data_preprocessor', None)
            if dp is not None and hasattr(dp, 'channels_last'):
                dp.channels_last = True
            runner.logger.info('ChannelsLastHook: wrapped model, channels-last inputs only')
            return
        to_channels_last(runner.model)
        runner.logger.info('ChannelsLastHook: model and inputs in channels_last')


def compile_modules(model: nn.Module, names: Sequence[str], **options) -> nn.Module:
    """``torch.compile`` the named submodules of ``model`` in place (missing names skipped)."""
    for name in names:
        module = getattr(model, name, None)
        if isinstance(module, nn.Module):
            module.compile(**options)
    return model


@HOOKS.register_module()
class CompileModulesHook(Hook):
    """Compile submodules (default: the encoder and projection neck) before training.

    Args:
        modules (Sequence[str]): Attribute names of the submodules to compile.
        **options: ``torch.compile`` options (``mode``, ``dynamic``, ``backend``, ...).
    """

    priority = 'VERY_HIGH'

    def __init__(self, modules: Sequence[str] = ('backbone', 'neck'), **options):
        self.modules = tuple(modules)
        self.options = options

    def before_run(self, runner) -> None:
        model = unwrap_model(runner)
        compile_modules(model, self.modules, **self.options)
        runner.logger.info(f'CompileModulesHook: compiled {self.modules} {self.options}')
