"""Loading encoder weights from untrusted files as tensors only.

A suspect encoder is this project's threat model: unpickling it with ``weights_only=False`` runs
whatever code the file carries.  Everything here goes through ``torch.load(weights_only=True)``
(with an allow-list of the plain-data classes mmengine writes into its own checkpoints) or
``safetensors``; a file that needs any other global is refused with :class:`UnsafeCheckpointError`.
"""
import os.path as osp
import pickle
from collections import OrderedDict
from typing import Dict, Iterable, Optional

import numpy as np
import torch
import torch.nn as nn

from .errors import CheckpointError, UnsafeCheckpointError

__all__ = ['SAFE_GLOBALS', 'safe_torch_load', 'load_state_dict_file', 'match_backbone_state',
           'load_encoder_weights']


def _numpy_globals():
    out = [np.ndarray, np.dtype]
    try:  # numpy >= 2 pickles as numpy._core, numpy 1.x as numpy.core
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    out += [_reconstruct, scalar]
    # the dtype classes numpy pickles, e.g. numpy.dtypes.Float64DType
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return out


_HISTORY_STATS = ('min', 'max', 'current', 'mean')


def _history_buffer_getattr(obj, name):
    """Stand-in for ``builtins.getattr`` that resolves only ``HistoryBuffer.<statistic>``.

    Stock mmengine pickles every ``HistoryBuffer`` with ``getattr(HistoryBuffer, 'min')`` (and
    max/current/mean).  Allowing ``getattr`` itself would let a file reach anything; this admits
    exactly those four lookups and refuses every other.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_STATS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'GLOBAL builtins.getattr({obj!r}, {name!r}) was not allowed')


def _mmengine_globals():
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
            (_history_buffer_getattr, '__builtin__.getattr')]


#: Classes (beyond torch's own tensor types) a checkpoint may reference.  All are plain data
#: containers whose unpickling cannot call arbitrary code.
SAFE_GLOBALS = [OrderedDict] + _numpy_globals() + _mmengine_globals()


def _first_line(text: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return (lines[0] if lines else 'empty or truncated file')[:limit]


def safe_torch_load(path: str, map_location='cpu'):
    """``torch.load`` with ``weights_only=True`` and the plain-data allow-list.

    Args:
        path (str): A file written by ``torch.save``.
        map_location: Passed to ``torch.load``.

    Returns:
        Any: The loaded object (tensors, containers, numbers, strings, numpy arrays).

    Raises:
        CheckpointError: The file is missing or is not a torch file.
        UnsafeCheckpointError: The file references a class or function outside the allow-list,
            i.e. loading it fully would execute code it carries.
    """
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if 'GLOBAL' in msg or 'REDUCE' in msg or 'global' in msg:
            detail = _first_line(msg.split('GLOBAL', 1)[1]) if 'GLOBAL' in msg else \
                _first_line(msg)
            detail = detail.split(' was not')[0].split(' whose module')[0].strip()
            raise UnsafeCheckpointError(
                f'refused to load {path}: it references {detail}, which is not tensor data; '
                'loading it fully could execute code it carries. Save the encoder as a plain '
                'state dict (torch.save(model.state_dict())) or as safetensors.') from None
        raise CheckpointError(
            f'{path} is not a readable torch checkpoint ({_first_line(msg)})') from None
    except Exception as e:  # torch raises many types on garbage (IndexError, EOFError, ...)
        raise CheckpointError(f'{path} is not a readable torch checkpoint: '
                              f'{type(e).__name__}: {_first_line(e)}') from None


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
            raise CheckpointError(f'{path} is not a readable safetensors file: {e}') from None
    obj = safe_torch_load(path)
    if isinstance(obj, dict):
        for key in ('state_dict', 'model', 'net', 'encoder'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f'{path} holds no state dict (found {type(obj).__name__})')
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
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
        sample = ', '.join(list(state)[:3])
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
    state = load_state_dict_file(path)
    backbone.load_state_dict(match_backbone_state(state, backbone, source=path), strict=True)
    return path
