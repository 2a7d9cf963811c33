"""Loading encoder weights from untrusted files as tensors only.

A suspect encoder is this project's threat model.  Files are read through
:func:`~bmaiu_plugin.utils.safe_load.safe_torch_load` (nothing the file names is called; numpy
and mmengine statistics objects it carries are dropped as inert records) or ``safetensors``; a
file that names any other global is refused with :class:`UnsafeCheckpointError`.
"""
import os.path as osp
from typing import Dict, Iterable, Optional

import torch
import torch.nn as nn

from .errors import CheckpointError, UnsafeCheckpointError  # noqa: F401 (re-exported)
from .errors import clip
from .safe_load import safe_torch_load

__all__ = ['safe_torch_load', 'load_state_dict_file', 'match_backbone_state',
           'load_encoder_weights', 'check_finite']


def load_state_dict_file(path: str) -> Dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict from a checkpoint file.

    Accepts an mmengine checkpoint (``{'state_dict': ..., 'meta': ...}``), a plain state dict,
    common wrappers (``'model'``, ``'state_dict'``, ``'net'``) and ``.safetensors`` files.

    Args:
        path (str): The checkpoint file.

    Returns:
        dict[str, Tensor]: The tensors, names as stored.
    """
    if path is None or not osp.isfile(str(path)):
        raise CheckpointError(f'encoder checkpoint not found: {path}')
    if str(path).endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return dict(load_file(path, device='cpu'))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f'{path} is not a readable safetensors file '
                                  f'({clip(str(e), 120, quote=False)}); replace it with a good '
                                  'copy') from None
    obj = safe_torch_load(path, records='drop', kind='encoder checkpoint')
    if isinstance(obj, dict):
        for key in ('state_dict', 'model', 'net', 'encoder'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        found = clip(type(obj).__name__, 80, quote=False)
        raise CheckpointError(f'{path} holds no state dict (found {found})')
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f'{path} holds no tensors')
    return tensors


#: Prefixes under which an encoder's weights are commonly stored, tried in this order.
ENCODER_PREFIXES = ('', 'backbone.', 'module.backbone.', 'encoder.', 'module.encoder.', 'f.',
                    'module.f.', 'model.backbone.', 'module.', 'online_net.backbone.')


def match_backbone_state(state: Dict[str, torch.Tensor], backbone: nn.Module,
                         prefixes: Optional[Iterable[str]] = None,
                         source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """Pick the sub-dict of ``state`` that is ``backbone``'s state dict.

    The prefix under which the most of ``backbone``'s keys are found wins; the match must then be
    complete (every key present, every shape equal), else :class:`CheckpointError` lists the
    differences.

    Args:
        state (dict): Tensors as loaded by :func:`load_state_dict_file`.
        backbone (nn.Module): The module to load into.
        prefixes (Iterable[str], optional): Candidate prefixes. Defaults to
            :data:`ENCODER_PREFIXES`.
        source (str): Name of the file, for messages.

    Returns:
        dict[str, Tensor]: ``backbone``'s keys mapped to the checkpoint's tensors.
    """
    target = backbone.state_dict()
    best, best_hits = None, -1
    for prefix in (prefixes or ENCODER_PREFIXES):
        hits = sum(1 for k in target if prefix + k in state)
        if hits > best_hits:
            best, best_hits = prefix, hits
    if best_hits <= 0:
        sample = ', '.join(clip(k, 60, quote=False) for k in list(state)[:3])
        raise CheckpointError(
            f'{source} does not contain this backbone ({type(backbone).__name__}): none of its '
            f'{len(target)} parameter names were found (checkpoint keys look like: {sample})')
    missing = [k for k in target if best + k not in state]
    shapes = [f'{k}: checkpoint {tuple(state[best + k].shape)} vs model {tuple(v.shape)}'
              for k, v in target.items() if best + k in state and state[best + k].shape != v.shape]
    if missing or shapes:
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing (e.g. {", ".join(missing[:3])})')
        if shapes:
            parts.append(f'{len(shapes)} of another shape (e.g. {shapes[0]})')
        raise CheckpointError(
            f'the backbone in {source} does not match the config\'s '
            f'{type(backbone).__name__}: ' + '; '.join(parts))
    return {k: state[best + k] for k in target}


def load_encoder_weights(backbone: nn.Module, path: str) -> str:
    """Load an encoder checkpoint into ``backbone`` as tensors only.

    Args:
        backbone (nn.Module): The encoder to fill.
        path (str): mmengine checkpoint, plain state dict or safetensors file.

    Returns:
        str: ``path``, for logging.
    """
    state = match_backbone_state(load_state_dict_file(path), backbone, source=path)
    check_finite(state, path)
    backbone.load_state_dict(state, strict=True)
    return path


def check_finite(state: Dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` if a floating-point tensor of ``state`` is not finite.

    Args:
        state (dict[str, Tensor]): The weights about to be loaded.
        source (str): Their file, for the message.
    """
    bad = [k for k, v in state.items()
           if (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f'{source} holds weights that are not finite (NaN or inf) in {len(bad)} tensor(s), '
            f'e.g. {bad[0]}; a diverged or corrupted run wrote it: use an earlier checkpoint')
