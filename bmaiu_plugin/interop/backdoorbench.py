"""BackdoorBench attack records: export a probed encoder as one, import one safely.

BackdoorBench (SCLBD/BackdoorBench) evaluates supervised classifiers from an *attack record*,
``<root>/record/<name>/attack_result.pt``: a ``torch.save``-d dict holding the classifier's state
dict, the dataset name and the triggered test set as PNG files.  The only object this plugin and
BackdoorBench share is a downstream classifier (frozen encoder + linear probe), so this module
meets BackdoorBench at that file format, with no dependency on BackdoorBench (and no code from it):

* :func:`export_attack_record` turns an encoder checkpoint, a linear probe (trained here on
  cached features, or given) and an attack's trigger into such a record;
* :func:`import_attack_record` loads a record as tensors only (no arbitrary unpickling), maps its
  network (``preactresnet18`` or a torchvision ResNet) onto a plugin backbone and evaluates
  BA / ASR / PA on the record's triggered test set.

Conventions (see ``docs/backdoorbench.md``):

* **Networks.** BackdoorBench rebuilds ``record['model_name']`` and fills it by position with a
  strict load, so only encoders with a BackdoorBench network export (:mod:`.bb_models`):
  :class:`~bmaiu_plugin.models.backbones.PreActResNet` as ``preactresnet18`` (head
  ``linear.*``) and mmpretrain's ImageNet-stem ``ResNet`` as torchvision's ``resnetNN`` (head
  ``fc.*``); any other encoder is refused before work starts.
* **Input normalization.** BackdoorBench feeds ``(x / 255 - mean) / std`` with its own
  per-dataset constants (:data:`BB_NORMALIZATION`).  An encoder trained with another std is
  re-expressed exactly by scaling its first convolution per input channel; a different mean
  cannot be folded (zero padding) and is refused.
* **Probe.** A torchvision classifier has no feature normalization layer, so the exported probe
  must act on raw pooled features.  By default it is the plugin's L2-normalized probe without a
  bias (``argmax W f/|f| = argmax W f``: the same decisions); alternatively a probe on
  per-dimension standardized features with bias, the standardization folded into ``fc``.
* **numpy arrays** (``original_index_array``, ``poison_indicator``) are pickled under the module
  path ``numpy.core.multiarray``, which numpy 1.x (BackdoorBench's stack) and numpy 2.x both
  resolve; numpy 2 would otherwise write ``numpy._core``, unknown to numpy < 1.26.1.
"""
import functools
import hashlib
import os
import os.path as osp
import pickle
import re
import shutil
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..evaluation.probe import EncoderClassifier, attack_rates, percent, train_linear_probe
from ..models.features import CIFAR10_MEAN, CIFAR10_STD, PixelNormalizer
from ..utils.checkpoint import load_state_dict_file, match_backbone_state, safe_torch_load
from ..utils.data import encode_batched
from ..utils.errors import ConfigValueError
from .bb_models import (RecordError, bb_model_name, bb_to_encoder, check_loadable, encoder_to_bb,
                        encoder_to_torchvision, infer_backbone_cfg, torchvision_to_encoder)

__all__ = ['BB_NORMALIZATION', 'RECORD_FILE', 'BD_TEST_FOLDER', 'PROBE_FEATURES', 'RecordError',
           'BackdoorBenchClassifier', 'ImportedRecord', 'save_record', 'load_record',
           'validate_record', 'encoder_to_torchvision', 'torchvision_to_encoder',
           'infer_backbone_cfg', 'rescale_stem', 'load_cifar10', 'export_attack_record',
           'import_attack_record', 'write_encoder', 'torch_load_allow_list']

#: File name of an attack record inside ``<root>/record/<name>/``.
RECORD_FILE = 'attack_result.pt'
#: Folder (inside ``record/<name>/``) of the triggered test PNGs.
BD_TEST_FOLDER = 'bd_test_dataset'
#: ``record['bmaiu']['format']`` of the records this module writes.
FORMAT = 'bmaiu_plugin.backdoorbench'
FORMAT_VERSION = 1

#: BackdoorBench's input normalization per dataset name, ``(mean, std)`` on the 0-1 scale
#: (``transforms.Normalize`` after ``ToTensor``; identity for GTSRB).
BB_NORMALIZATION: Dict[str, Tuple[Tuple[float, ...], Tuple[float, ...]]] = {
    'cifar10': ((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)),
    'cifar100': ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    'tiny': ((0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)),
    'gtsrb': ((0., 0., 0.), (1., 1., 1.)),
    'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

#: CIFAR-10 mean / std of the plugin's configs, 0-255 scale.

#: Keys every attack record has (BackdoorBench's schema).
REQUIRED_KEYS = ('model_name', 'num_classes', 'model', 'data_path', 'img_size', 'clean_data',
                 'bd_train', 'bd_test')

#: Largest mean difference (in units of the encoder's normalized input) accepted when
#: re-expressing an encoder for another normalization.
MEAN_TOLERANCE = 1e-3


# ------------------------------------------------------------------------------------------
# pickling: numpy arrays readable by numpy 1.x and 2.x
# ------------------------------------------------------------------------------------------
def _numpy_multiarray():
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


@functools.lru_cache(maxsize=1)
def _numpy1_names() -> Tuple[Tuple[object, str, str], ...]:
    """``(function, module, name)``: numpy's pickling helpers under their numpy 1.x path."""
    ma = _numpy_multiarray()
    return ((ma._reconstruct, 'numpy.core.multiarray', '_reconstruct'),
            (ma.scalar, 'numpy.core.multiarray', 'scalar'))


def torch_load_allow_list() -> list:
    """The globals a record needs under ``torch.load(path, weights_only=True)``.

    torch >= 2.6 loads with ``weights_only=True`` by default and refuses the record's numpy
    arrays; ``with torch.serialization.safe_globals(torch_load_allow_list()):
    torch.load(path)`` allows exactly numpy's array reconstruction (under the numpy 1.x name
    the record uses), ``ndarray``, ``dtype`` and the int64 dtype class, nothing else.
    """
    ma = _numpy_multiarray()
    return [(ma._reconstruct, 'numpy.core.multiarray._reconstruct'), np.ndarray, np.dtype,
            type(np.dtype(np.int64))]


class _Numpy1CompatPickler(pickle._Pickler):
    """Pure-Python pickler that names numpy's array helpers ``numpy.core.multiarray.*``.

    numpy 2 pickles arrays with ``numpy._core.multiarray._reconstruct``; numpy 1.x (before
    1.26.1) has no ``numpy._core`` and cannot load that.  ``numpy.core.multiarray`` is the real
    module in numpy 1.x and a forwarding shim in numpy 2.x, so both resolve it to the same
    function.  Everything else is pickled as by :mod:`pickle`.
    """

    def save_global(self, obj, name=None):
        for fn, module, qualname in _numpy1_names():
            if obj is fn:
                if self.proto >= 4:
                    self.save(module)
                    self.save(qualname)
                    self.write(pickle.STACK_GLOBAL)
                else:
                    self.write(pickle.GLOBAL + f'{module}\n{qualname}\n'.encode('utf-8'))
                self.memoize(obj)
                return
        super().save_global(obj, name)


#: A ``pickle_module`` for ``torch.save`` (it only needs ``Pickler``).
_PICKLE_MODULE = types.ModuleType('bmaiu_numpy1_compat_pickle')
_PICKLE_MODULE.Pickler = _Numpy1CompatPickler


def save_record(record: dict, path: str) -> str:
    """Validate ``record`` and ``torch.save`` it atomically, numpy 1.x-readable.

    Args:
        record (dict): An attack record (:data:`REQUIRED_KEYS`).
        path (str): Destination file (overwritten: callers check ``force``).

    Returns:
        str: ``path``.
    """
    validate_record(record, source=path)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{os.getpid()}'
    try:
        torch.save(record, tmp, pickle_module=_PICKLE_MODULE, pickle_protocol=2)
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return path


def load_record(path: str) -> dict:
    """Load and validate an attack record as plain data only.

    Uses :func:`~bmaiu_plugin.utils.safe_load.safe_torch_load`: numpy arrays (under their
    numpy 1.x and 2.x names) are rebuilt from validated plain numeric data, and a record that
    names any other class or function is refused before anything in it runs.

    Args:
        path (str): ``attack_result.pt`` or the ``record/<name>`` folder holding it.

    Returns:
        dict: The record.

    Raises:
        RecordError: Missing file or malformed record (the message names the problem).
        UnsafeCheckpointError: The file would run code when unpickled.
    """
    if osp.isdir(path):
        path = osp.join(path, RECORD_FILE)
    if not osp.isfile(path):
        raise RecordError(f'BackdoorBench record not found: {path}')
    record = safe_torch_load(path, kind='BackdoorBench record', error_cls=RecordError)
    validate_record(record, source=path)
    return record


# ------------------------------------------------------------------------------------------
# schema
# ------------------------------------------------------------------------------------------
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int_array(v, what: str, fail) -> np.ndarray:
    """A 1-D integer numpy array from an array, tensor or list; else ``fail``."""
    if isinstance(v, torch.Tensor):
        v = v.numpy()
    try:
        arr = np.asarray(v)
    except Exception:  # ragged lists and the like
        fail(f'{what} must be a 1-D integer array')
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in 'iub'):
        fail(f'{what} must be a 1-D integer array (found shape {arr.shape}, dtype {arr.dtype})')
    return arr.astype(np.int64)


def _validate_bd_test(bd, fail) -> None:
    if not isinstance(bd, dict):
        fail(f"'bd_test' must be None or a dict (found {type(bd).__name__})")
    for key in ('bd_data_container', 'original_index_array', 'poison_indicator'):
        if key not in bd:
            fail(f"'bd_test' has no '{key}'")
    cont = bd['bd_data_container']
    if not isinstance(cont, dict) or not isinstance(cont.get('data_dict'), dict):
        fail("'bd_test.bd_data_container' must be a dict with a 'data_dict' dict")
    for key in ('save_folder_path', 'save_file_format'):
        if key in cont and not isinstance(cont[key], str):
            fail(f"'bd_test.bd_data_container.{key}' must be a string")
    if 'save_folder_path' in bd and not isinstance(bd['save_folder_path'], (str, type(None))):
        fail("'bd_test.save_folder_path' must be a string")
    for idx, item in cont['data_dict'].items():
        where = f"'bd_test.bd_data_container.data_dict[{idx!r}]'"
        if not _is_int(idx) or int(idx) < 0:
            fail(f'{where}: keys must be non-negative test-set indices')
        if not isinstance(item, dict) or not isinstance(item.get('path'), str):
            fail(f"{where} must be a dict with a 'path' string")
        info = item.get('other_info')
        if not isinstance(info, (list, tuple)) or len(info) < 2 or \
                not all(_is_int(v) for v in info[:2]):
            fail(f"{where}: 'other_info' must be [bd_label, original_label] (integers), "
                 f'found {info!r}')
    index = _int_array(bd['original_index_array'], "'bd_test.original_index_array'", fail)
    indicator = _int_array(bd['poison_indicator'], "'bd_test.poison_indicator'", fail)
    if indicator.size and not np.isin(indicator, (0, 1)).all():
        fail("'bd_test.poison_indicator' must hold only 0 and 1")
    if index.size and (index.min() < 0 or index.max() >= max(len(indicator), 1)):
        fail("'bd_test.original_index_array' has indices outside 'poison_indicator' "
             f'(length {len(indicator)})')
    if index.size and not indicator[index].all():
        fail("'bd_test.poison_indicator' is 0 at some indices of 'original_index_array'")
    keys = {int(k) for k in cont['data_dict']}
    missing = [int(i) for i in index if int(i) not in keys]
    if missing:
        fail(f"'bd_test.bd_data_container.data_dict' has no entry for {len(missing)} poisoned "
             f'index(es) of original_index_array (e.g. {missing[0]})')


def validate_record(record, source: str = 'record') -> None:
    """Check a record against BackdoorBench's schema; raise one clear error otherwise.

    Args:
        record (Any): The loaded object.
        source (str): Name of the file, for messages.

    Raises:
        RecordError: The first problem found, e.g. a missing key, a ``model`` that is not a
            dict of tensors, or a ``bd_test`` entry without a path.
    """
    def fail(msg):
        raise RecordError(f'{source}: {msg}')

    if not isinstance(record, dict):
        fail(f'is not a BackdoorBench attack record (a dict); found {type(record).__name__}')
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        fail(f'is not a BackdoorBench attack record: missing key(s) {", ".join(missing)} '
             f'(a record has {", ".join(REQUIRED_KEYS)})')
    if not isinstance(record['model_name'], str) or not record['model_name']:
        fail("'model_name' must be a non-empty string")
    if not _is_int(record['num_classes']) or int(record['num_classes']) <= 0:
        fail(f"'num_classes' must be a positive integer, found {record['num_classes']!r}")
    model = record['model']
    if not isinstance(model, dict) or not model:
        fail(f"'model' must be a non-empty state dict (found {type(model).__name__})")
    bad = [k for k, v in model.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        fail(f"'model' must map parameter names to tensors; {len(bad)} entry(ies) do not "
             f'(e.g. {bad[0]!r}: {type(model[bad[0]]).__name__})')
    if not isinstance(record['data_path'], str):
        fail("'data_path' must be a string")
    size = record['img_size']
    if not isinstance(size, (list, tuple)) or len(size) != 3 or \
            not all(_is_int(v) and int(v) > 0 for v in size):
        fail(f"'img_size' must be [height, width, channels], found {size!r}")
    if not isinstance(record['clean_data'], str) or not record['clean_data']:
        fail("'clean_data' must be a dataset name")
    if record['bd_train'] is not None and not isinstance(record['bd_train'], dict):
        fail(f"'bd_train' must be None or a dict (found {type(record['bd_train']).__name__})")
    if record['bd_test'] is not None:
        _validate_bd_test(record['bd_test'], fail)
    if 'bmaiu' in record and not isinstance(record['bmaiu'], dict):
        fail("'bmaiu' (this plugin's metadata) must be a dict")


# ------------------------------------------------------------------------------------------
# input normalization
# ------------------------------------------------------------------------------------------
def rescale_stem(weight: torch.Tensor, src: Tuple[Sequence[float], Sequence[float]],
                 dst: Tuple[Sequence[float], Sequence[float]], what: str = 'the target'
                 ) -> torch.Tensor:
    """First-convolution weights for inputs normalized with ``dst`` instead of ``src``.

    With ``x_src = (p - m_src) / s_src`` and ``x_dst = (p - m_dst) / s_dst``, equal means give
    ``x_src = (s_dst / s_src) * x_dst``: scaling input channel ``c`` of the stem by
    ``s_dst[c] / s_src[c]`` makes the network compute the same function of the pixels.

    Args:
        weight (Tensor): ``(out, C, k, k)`` stem weight of a network fed ``src``-normalized input.
        src (tuple): ``(mean, std)`` the weights were trained with (any common scale).
        dst (tuple): ``(mean, std)`` the new inputs will have (same scale as ``src``).
        what (str): Name of ``dst``, for messages.

    Returns:
        Tensor: The new weight (same dtype).

    Raises:
        RecordError: Channel counts differ, or the means differ by more than
            :data:`MEAN_TOLERANCE` input units (not expressible: zero padding).
    """
    m_s, s_s = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in src)
    m_d, s_d = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in dst)
    c = weight.shape[1]
    if not len(m_s) == len(s_s) == len(m_d) == len(s_d) == c:
        raise RecordError(f'the stem takes {c} channels but the normalizations have '
                          f'{len(m_s)} and {len(m_d)}')
    shift = ((m_d - m_s) / s_s).abs().max().item()
    if shift > MEAN_TOLERANCE:
        raise RecordError(
            f'cannot re-express the encoder for {what}: its input mean '
            f'{[round(v, 4) for v in m_d.tolist()]} differs from the encoder\'s '
            f'{[round(v, 4) for v in m_s.tolist()]} (by {shift:.3g} normalized units); only a '
            'different std can be folded into the first convolution')
    scale = (s_d / s_s).view(1, c, 1, 1)
    return (weight.double() * scale).to(weight.dtype)


def _to_unit(norm: Tuple[Sequence[float], Sequence[float]]) -> Tuple[List[float], List[float]]:
    """0-255 scale -> 0-1 scale."""
    return [float(v) / 255. for v in norm[0]], [float(v) / 255. for v in norm[1]]


def _to_pixel(norm: Tuple[Sequence[float], Sequence[float]]) -> Tuple[List[float], List[float]]:
    """0-1 scale -> 0-255 scale."""
    return [float(v) * 255. for v in norm[0]], [float(v) * 255. for v in norm[1]]


# ------------------------------------------------------------------------------------------
# the shared classifier
# ------------------------------------------------------------------------------------------
class BackdoorBenchClassifier(EncoderClassifier):
    """Encoder + linear head on pooled features, applied to pixel-space images.

    This is the downstream classifier BackdoorBench sees: ``fc(avgpool(backbone(norm(x))))``, an
    :class:`~bmaiu_plugin.evaluation.probe.EncoderClassifier` with the record's normalization
    (``features``, ``logits``, ``predict`` come from it).

    Args:
        backbone (nn.Module): An mmpretrain backbone (tuple-of-stages or tensor output).
        fc (nn.Linear): The head, on raw pooled features.
        mean (Sequence[float]): Input normalization mean, 0-255 scale.
        std (Sequence[float]): Input normalization std, 0-255 scale.
    """

    def __init__(self, backbone: nn.Module, fc: nn.Linear, mean: Sequence[float],
                 std: Sequence[float]):
        super().__init__(backbone, fc, normalizer=PixelNormalizer(mean, std))

    @property
    def backbone(self) -> nn.Module:
        """The encoder (the record's ``backbone``)."""
        return self.encoder

    @property
    def fc(self) -> nn.Linear:
        """The linear head (the record's ``fc``)."""
        return self.head


def _attack_metrics(pred_bd: torch.Tensor, bd_labels: torch.Tensor,
                    original: torch.Tensor) -> Dict[str, float]:
    """ASR and PA on the triggered items whose original label is not the target."""
    m = attack_rates(pred_bd, original, bd_labels)
    return dict(ASR=m['ASR'], PA=m['PA'])


# ------------------------------------------------------------------------------------------
# data and probe helpers
# ------------------------------------------------------------------------------------------
def load_cifar10(data_root: Optional[str], split: str, check_md5: bool = False
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` as ``(uint8 (N, 3, 32, 32) RGB images, long labels)``."""
    from ..datasets import BackdoorCIFAR10, dataset_arrays
    ds = BackdoorCIFAR10(data_root=data_root, split=split, check_md5=check_md5, pipeline=[],
                         test_mode=split == 'test')
    imgs, labels = dataset_arrays(ds)
    return imgs, labels.long()


def _encode(backbone: nn.Module, normalizer: nn.Module, imgs: torch.Tensor, batch_size: int,
            device) -> torch.Tensor:
    backbone.eval()
    return encode_batched(backbone, normalizer, imgs, batch_size, device=device)


def _probe_from(probe, source: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(weight, bias)`` of a given probe: ``nn.Linear``, a state dict or a file."""
    if isinstance(probe, nn.Linear):
        w = probe.weight.detach()
        b = probe.bias.detach() if probe.bias is not None else torch.zeros(w.shape[0])
        return w.cpu().float(), b.cpu().float()
    state = load_state_dict_file(probe) if isinstance(probe, str) else dict(probe)
    for prefix in ('', 'fc.', 'head.fc.', 'head.', 'linear.', 'classifier.', 'module.fc.'):
        w, b = state.get(prefix + 'weight'), state.get(prefix + 'bias')
        if isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor) and w.dim() == 2 \
                and b.shape == (w.shape[0],):
            return w.cpu().float(), b.cpu().float()
    raise ConfigValueError(
        f'probe {source}: no linear layer found (looked for weight/bias, fc.*, head.fc.*, '
        f'head.*, linear.*, classifier.*; keys: {", ".join(list(state)[:5])})')


def _train_probe_l2(feats: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    epochs: int = 10, batch_size: int = 64, lr: float = 0.1,
                    momentum: float = 0.9, weight_decay: float = 0., seed: int = 0
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """A bias-free linear probe on L2-normalized features, as ``(W, zeros)``.

    ``argmax W f / |f| = argmax W f``: on raw features the same ``W`` makes the same decisions,
    so the plugin's L2 probe (SGD + cosine schedule, as :func:`train_linear_probe`) is exactly
    representable by a torchvision ``fc``.  Only the bias is left out (it would not commute
    with the normalization).
    """
    head = train_linear_probe(F.normalize(feats, dim=1), labels, num_classes, epochs=epochs,
                              batch_size=batch_size, lr=lr, momentum=momentum,
                              weight_decay=weight_decay, seed=seed, bias=False)
    w = head.weight.detach().float()
    return w, torch.zeros(num_classes)


def _train_probe_standardized(feats: torch.Tensor, labels: torch.Tensor, num_classes: int,
                              **probe_cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """A probe (with bias) on per-dimension standardized features, folded into ``(W, b)``
    acting on the raw features: ``W' = W / sd``, ``b' = b - W' mu`` (exact)."""
    mu = feats.mean(0)
    sd = feats.std(0).clamp_min(1e-6) if len(feats) > 1 else torch.ones_like(mu)
    head = train_linear_probe((feats - mu) / sd, labels, num_classes, **probe_cfg)
    w = head.weight.detach().double() / sd.double()
    b = head.bias.detach().double() - w @ mu.double()
    return w.float(), b.float()


#: How an exported probe is trained (see :func:`export_attack_record`).
PROBE_FEATURES = {
    'l2': (_train_probe_l2, 'pooled, L2-normalized, no bias (same decisions on raw features)'),
    'standardize': (_train_probe_standardized,
                    'pooled, standardized per dimension, with bias (folded into fc)'),
}


def _resolve_attack(attack: Optional[str], trigger_name: Optional[str], trigger: Optional[dict],
                    target: Optional[int]) -> Tuple[str, dict, int]:
    """``(name, trigger cfg, target)`` from a preset or an explicit trigger."""
    if (attack is None) == (trigger is None):
        raise ConfigValueError('give either an attack preset (attack=/--attack) or a trigger '
                               'config with a target class (trigger=/--trigger, --target)')
    if attack is not None:
        from ..evaluation.presets import attack_triggers
        entries = attack_triggers(attack)
        if trigger_name is not None:
            entries = [e for e in entries if e['name'] == trigger_name]
            if not entries:
                names = [e['name'] for e in attack_triggers(attack)]
                raise ConfigValueError(f'attack {attack!r} has no trigger {trigger_name!r}; '
                                       f'one of {names}')
        if len(entries) > 1:
            raise ConfigValueError(
                f'attack {attack!r} has {len(entries)} triggers; a record holds one: choose it '
                f'with trigger_name= / --trigger-name (one of {[e["name"] for e in entries]})')
        entry = entries[0]
        tgt = entry['target'] if target is None else int(target)
        return entry['name'], dict(entry['trigger']), tgt
    if not isinstance(trigger, dict) or 'type' not in trigger:
        raise ConfigValueError(f'a trigger config is a dict with a type, got {trigger!r}')
    if target is None:
        raise ConfigValueError('a trigger config needs a target class (target= / --target)')
    return trigger_name or 'custom', dict(trigger), int(target)


def _plain(obj):
    """A copy made of builtins only (tuples as lists), storable in any record."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return np.asarray(obj).tolist()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------------------
# export
# ------------------------------------------------------------------------------------------
def export_attack_record(encoder_checkpoint: str,
                         out_root: str,
                         name: str,
                         *,
                         backbone: dict,
                         mean: Sequence[float] = CIFAR10_MEAN,
                         std: Sequence[float] = CIFAR10_STD,
                         attack: Optional[str] = None,
                         trigger_name: Optional[str] = None,
                         trigger: Optional[dict] = None,
                         target: Optional[int] = None,
                         probe: Union[None, str, dict, nn.Linear] = None,
                         data_root: Optional[str] = None,
                         check_md5: bool = False,
                         data_path: str = './data/cifar10',
                         probe_train_size: Optional[int] = None,
                         num_test: Optional[int] = None,
                         probe_cfg: Optional[dict] = None,
                         probe_features: str = 'l2',
                         seed: int = 0,
                         batch_size: int = 256,
                         device: Union[str, torch.device] = 'cpu',
                         force: bool = False) -> dict:
    """Write a BackdoorBench attack record for an encoder + linear probe + attack trigger.

    The record is ``<out_root>/record/<name>/attack_result.pt`` with the triggered CIFAR-10
    test images (every non-target test image with the trigger, uint8, before normalization) as
    ``record/<name>/bd_test_dataset/<original_label>/<index>.png``.

    Args:
        encoder_checkpoint (str): Encoder weights (mmengine checkpoint, state dict or
            safetensors; loaded as tensors only).
        out_root (str): The folder that will hold ``record/``.
        name (str): The record's name (a folder name: letters, digits, ``._-``).
        backbone (dict): mmpretrain backbone config, e.g. ``dict(type='ResNet_CIFAR',
            depth=18)``; must be a ResNet with BN layers.
        mean (Sequence[float]): The encoder's input mean, 0-255 scale.
        std (Sequence[float]): The encoder's input std, 0-255 scale.
        attack (str, optional): Attack preset (:mod:`bmaiu_plugin.evaluation.presets`).
        trigger_name (str, optional): Which trigger of a multi-trigger preset; the name of an
            explicit ``trigger``.
        trigger (dict, optional): A trigger config (instead of ``attack``).
        target (int, optional): Target class; required with ``trigger``, overrides a preset's.
        probe (str | dict | nn.Linear, optional): A linear head on raw pooled features. Trained
            here when omitted.
        data_root (str, optional): Folder holding ``cifar-10-batches-py/`` (default
            ``$BMAIU_DATA_ROOT`` or ``data/cifar10``).
        check_md5 (bool): Check the CIFAR-10 files' official md5 sums.
        data_path (str): The record's ``data_path``: where BackdoorBench finds the clean data.
        probe_train_size (int, optional): Train the probe on the first N training images
            (default, or N larger than the split: all).
        num_test (int, optional): Export only the first N test images (default: all).
        probe_cfg (dict, optional): :func:`train_linear_probe` settings (epochs, batch_size,
            lr, momentum, weight_decay, seed); the paper's probe by default.
        probe_features (str): How the probe is trained, both exactly representable as a
            torchvision ``fc`` on raw pooled features: ``'l2'`` (default; the plugin's L2
            probe without bias: identical decisions) or ``'standardize'`` (per-dimension
            standardized features with bias, folded into ``fc``).
        seed (int): Seed of random trigger positions.
        batch_size (int): Encoding batch size.
        device (str | torch.device): Where the encoder runs.
        force (bool): Replace an existing record of that name.

    Returns:
        dict: ``record`` (path), ``root``, ``name``, ``metrics`` (BA / ASR / PA of the exported
        classifier, percent), ``num_test``, ``num_poisoned``, ``target``, ``trigger``.
    """
    from mmpretrain.registry import MODELS

    from ..triggers import build_trigger
    from ..utils.checkpoint import load_encoder_weights
    from ..version import __version__

    if not isinstance(name, str) or not re.fullmatch(r'[A-Za-z0-9][A-Za-z0-9._-]*', name):
        raise ConfigValueError(f'record name must be a folder name (letters, digits, ._-), '
                               f'got {name!r}')
    if 'data' not in str(data_path):
        raise ConfigValueError(f"data_path must contain 'data' (BackdoorBench checks it), got "
                               f'{data_path!r}')
    record_dir = osp.join(out_root, 'record', name)
    path = osp.join(record_dir, RECORD_FILE)
    bd_dir = osp.join(record_dir, BD_TEST_FOLDER)
    existing = [p for p in (path, bd_dir) if osp.exists(p)]
    if existing and not force:
        raise ConfigValueError(f'{existing[0]} exists; pass --force (force=True) to replace the '
                               'record')
    backbone_cfg = _plain(dict(backbone))
    model_name = bb_model_name(backbone_cfg)  # refuse what BackdoorBench cannot build, first
    trig_name, trig_cfg, target = _resolve_attack(attack, trigger_name, trigger, target)
    clean_data = 'cifar10'
    num_classes, img_hw = 10, (32, 32)
    if not 0 <= target < num_classes:
        raise ConfigValueError(f'target class must be in [0, {num_classes}), got {target}')
    trig = build_trigger(trig_cfg)
    if hasattr(trig, 'check_fits'):
        trig.check_fits(*img_hw)

    # the encoder, re-expressed for BackdoorBench's input normalization
    net = MODELS.build(dict(backbone))
    load_encoder_weights(net, encoder_checkpoint)
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in net.state_dict().items())
    encoder_to_bb(model_name, state, torch.zeros(num_classes, 1), torch.zeros(num_classes))
    bb_norm = BB_NORMALIZATION[clean_data]
    src_unit = _to_unit((mean, std))
    state['conv1.weight'] = rescale_stem(state['conv1.weight'], src_unit, bb_norm,
                                         f"BackdoorBench's {clean_data} normalization")
    stem_scale = (torch.tensor(bb_norm[1], dtype=torch.float64) /
                  torch.tensor(src_unit[1], dtype=torch.float64)).tolist()
    net = net.to(device)
    normalizer = PixelNormalizer(mean, std).to(device)

    # data
    test_imgs, test_labels = load_cifar10(data_root, 'test', check_md5)
    n_test_split = len(test_labels)
    if num_test is not None:
        if int(num_test) <= 0:
            raise ConfigValueError(f'num_test must be positive, got {num_test}')
        test_imgs, test_labels = test_imgs[:int(num_test)], test_labels[:int(num_test)]

    # the probe, on raw pooled features
    probe_meta: dict
    if probe is None and probe_features not in PROBE_FEATURES:
        raise ConfigValueError(f'probe_features must be one of {sorted(PROBE_FEATURES)}, got '
                               f'{probe_features!r}')
    if probe is None:
        train_imgs, train_labels = load_cifar10(data_root, 'train', check_md5)
        if probe_train_size is not None:
            if int(probe_train_size) <= 0:
                raise ConfigValueError(f'probe_train_size must be positive, got '
                                       f'{probe_train_size}')
            train_imgs = train_imgs[:int(probe_train_size)]
            train_labels = train_labels[:int(probe_train_size)]
        cfg = dict(epochs=10, batch_size=64, lr=0.1, momentum=0.9, weight_decay=0., seed=0)
        cfg.update(probe_cfg or {})
        feats = _encode(net, normalizer, train_imgs, batch_size, device)
        train_fn, features = PROBE_FEATURES[probe_features]
        fc_w, fc_b = train_fn(feats, train_labels, num_classes, **cfg)
        probe_meta = dict(source='trained', train_split='train', train_size=len(train_labels),
                          feature_mode=probe_features, features=features,
                          **_plain(cfg))
    else:
        if isinstance(probe, str) and not osp.isfile(probe):
            raise ConfigValueError(f'probe file not found: {probe}')
        fc_w, fc_b = _probe_from(probe, probe if isinstance(probe, str) else 'given')
        probe_meta = dict(source=probe if isinstance(probe, str) else 'given',
                          features='pooled (raw)')
    feat_dim = _encode(net, normalizer, test_imgs[:1], 1, device).shape[1]
    if fc_w.shape != (num_classes, feat_dim):
        raise ConfigValueError(f'the probe maps {fc_w.shape[1]} features to {fc_w.shape[0]} '
                               f'classes; this encoder gives {feat_dim} features and '
                               f'{clean_data} has {num_classes} classes')

    # the classifier exactly as BackdoorBench will run it
    model_state = encoder_to_bb(model_name, state, fc_w, fc_b)
    check_loadable(model_name, model_state, num_classes)
    backbone_state, w, b = bb_to_encoder(model_name, model_state)
    net.load_state_dict(backbone_state)
    fc = nn.Linear(feat_dim, num_classes).to(device)
    with torch.no_grad():
        fc.weight.copy_(w)
        fc.bias.copy_(b)
    clf = BackdoorBenchClassifier(net, fc, *_to_pixel(bb_norm)).to(device)

    # triggered test set: every non-target image of the exported test images
    poison_idx = torch.nonzero(test_labels != target).flatten()
    gen = torch.Generator().manual_seed(int(seed))
    trig.eval()
    with torch.no_grad():
        bd_imgs = trig.stamp_batched(test_imgs[poison_idx], gen, batch_size)
    bd_orig = test_labels[poison_idx]
    pred_clean = clf.predict(test_imgs, batch_size)
    pred_bd = clf.predict(bd_imgs, batch_size)
    metrics = dict(BA=percent(pred_clean == test_labels),
                   **_attack_metrics(pred_bd, torch.full_like(bd_orig, target), bd_orig))

    # files
    from PIL import Image
    if force and osp.isdir(bd_dir):
        shutil.rmtree(bd_dir)
    rel_folder = '/'.join(('record', name, BD_TEST_FOLDER))
    data_dict = {}
    for img, idx, orig in zip(bd_imgs, poison_idx.tolist(), bd_orig.tolist()):
        rel = f'{rel_folder}/{orig}/{idx}.png'
        dst = osp.join(out_root, *rel.split('/'))
        os.makedirs(osp.dirname(dst), exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(dst)
        data_dict[int(idx)] = {'path': rel, 'other_info': [int(target), int(orig)]}
    indicator = np.zeros(n_test_split, dtype=np.int64)
    indicator[poison_idx.numpy()] = 1
    trigger_state = {k: v.detach().cpu().clone() for k, v in trig.state_dict().items()}
    record = {
        'model_name': model_name,
        'num_classes': num_classes,
        'model': model_state,
        'data_path': str(data_path),
        'img_size': [img_hw[0], img_hw[1], 3],
        'clean_data': clean_data,
        'bd_train': None,
        'bd_test': {
            'bd_data_container': {'save_folder_path': rel_folder, 'data_dict': data_dict,
                                  'save_file_format': '.png'},
            'getitem_all': True,
            'getitem_all_switch': False,
            'original_index_array': poison_idx.numpy().astype(np.int64),
            'poison_indicator': indicator,
            'save_folder_path': rel_folder,
        },
        'bmaiu': {
            'format': FORMAT,
            'format_version': FORMAT_VERSION,
            'plugin_version': __version__,
            'attack': {'name': trig_name, 'preset': attack, 'target': int(target),
                       'trigger': _plain(trig_cfg), 'trigger_state': trigger_state,
                       'seed': int(seed)},
            'encoder_checkpoint': str(encoder_checkpoint),
            'encoder_sha256': _sha256(encoder_checkpoint),
            'backbone': backbone_cfg,
            'stem': 'imagenet' if backbone_cfg.get('type') == 'ResNet' else 'cifar',
            'input_normalization': {'mean': list(bb_norm[0]), 'std': list(bb_norm[1]),
                                    'scale': '0-1', 'convention': f'backdoorbench:{clean_data}'},
            'encoder_normalization': {'mean': [float(v) for v in mean],
                                      'std': [float(v) for v in std], 'scale': '0-255'},
            'stem_rescale': stem_scale,
            'probe': probe_meta,
            'num_test': len(test_labels),
            'metrics': metrics,
        },
    }
    save_record(record, path)
    return dict(record=path, root=out_root, name=name, metrics=metrics,
                num_test=len(test_labels), num_poisoned=len(poison_idx), target=int(target),
                trigger=trig_name)


# ------------------------------------------------------------------------------------------
# import
# ------------------------------------------------------------------------------------------
@dataclass
class ImportedRecord:
    """A loaded record: the classifier and what was measured on the record's data.

    Attributes:
        path (str): The record file.
        root (str): The folder holding ``record/`` (PNG paths are relative to it).
        record (dict): The validated record.
        backbone_cfg (dict): mmpretrain config of the backbone.
        classifier (BackdoorBenchClassifier): Backbone + ``fc`` with the record's input
            normalization.
        normalization (tuple): ``(mean, std)`` the classifier applies, 0-255 scale.
        metrics (dict): ``BA`` (when the clean test set was found), ``ASR`` and ``PA`` on the
            triggered test set, percent; ``num_bd_test``.
        bd_images (Tensor, optional): The triggered test images, uint8 ``(N, C, H, W)``.
        bd_indices (Tensor, optional): Their test-set indices.
        bd_labels (Tensor, optional): Their backdoor labels (the target).
        bd_original_labels (Tensor, optional): Their true labels.
        bd_predictions (Tensor, optional): The classifier's predictions on them.
        notes (list[str]): What could not be evaluated and why.
    """
    path: str
    root: str
    record: dict
    backbone_cfg: dict
    classifier: BackdoorBenchClassifier
    normalization: Tuple[List[float], List[float]]
    metrics: Dict[str, float] = field(default_factory=dict)
    bd_images: Optional[torch.Tensor] = None
    bd_indices: Optional[torch.Tensor] = None
    bd_labels: Optional[torch.Tensor] = None
    bd_original_labels: Optional[torch.Tensor] = None
    bd_predictions: Optional[torch.Tensor] = None
    notes: List[str] = field(default_factory=list)


def _default_root(path: str) -> str:
    d = osp.dirname(osp.abspath(path))
    if osp.basename(osp.dirname(d)) == 'record':
        return osp.dirname(osp.dirname(d))
    return d


def _inside(root: str, rel: str, source: str) -> str:
    """``root/rel``, refused when ``rel`` is absolute or leaves ``root``."""
    if osp.isabs(rel) or rel.startswith(('/', '\\')):
        raise RecordError(f'{source}: bd_test path {rel!r} is absolute; record paths are '
                          'relative to the folder holding record/')
    full = osp.realpath(osp.join(root, rel))
    base = osp.realpath(root)
    if full != base and not full.startswith(base + os.sep):
        raise RecordError(f'{source}: bd_test path {rel!r} points outside the record root '
                          f'{root}')
    return full


def _read_png(path: str, hw: Tuple[int, int], source: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    if not osp.isfile(path):
        raise RecordError(f'{source}: triggered test image missing: {path} (pass the folder '
                          'holding record/ as the root)')
    try:
        with Image.open(path) as im:
            if im.size != (hw[1], hw[0]):
                raise RecordError(f'{source}: {path} is {im.size[0]}x{im.size[1]}, the record\'s '
                                  f'img_size is {hw[1]}x{hw[0]}')
            return np.asarray(im.convert('RGB'), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise RecordError(f'{source}: {path} is not a readable image ({e})') from None


def _load_bd_test(record: dict, root: str, source: str):
    bd = record['bd_test']
    data_dict = bd['bd_data_container']['data_dict']
    folder = bd['bd_data_container'].get('save_folder_path') or bd.get('save_folder_path') or ''
    index = np.asarray(bd['original_index_array']).astype(np.int64)
    hw = (int(record['img_size'][0]), int(record['img_size'][1]))
    imgs, bd_labels, orig = [], [], []
    for i in index.tolist():
        item = data_dict[i]  # numpy integer keys hash and compare as ints
        rel = item['path']
        full = _inside(root, rel, source)
        if not osp.isfile(full) and folder:  # paths relative to the container's folder
            alt = _inside(root, osp.join(folder, rel), source)
            full = alt if osp.isfile(alt) else full
        imgs.append(_read_png(full, hw, source))
        bd_labels.append(int(item['other_info'][0]))
        orig.append(int(item['other_info'][1]))
    if imgs:
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    else:
        x = torch.zeros(0, 3, *hw, dtype=torch.uint8)
    return (x, torch.as_tensor(index), torch.tensor(bd_labels, dtype=torch.long),
            torch.tensor(orig, dtype=torch.long))


def _record_backbone_cfg(cfg: dict, source: str) -> dict:
    """A backbone config read from a record: only the ResNets this bridge maps, and nothing
    that would load files (``init_cfg``, ``pretrained``)."""
    cfg = _plain(dict(cfg))
    if cfg.get('type') not in ('PreActResNet', 'ResNet', 'ResNet_CIFAR'):
        raise RecordError(f"{source}: the record's backbone type {cfg.get('type')!r} is not "
                          'PreActResNet, ResNet or ResNet_CIFAR; pass a backbone config '
                          '(--config)')
    for key in ('init_cfg', 'pretrained'):
        cfg.pop(key, None)
    return cfg


def _record_normalization(record: dict, source: str) -> Tuple[List[float], List[float]]:
    """The classifier's input ``(mean, std)``, 0-255 scale."""
    meta = record.get('bmaiu') or {}
    norm = meta.get('input_normalization')
    if isinstance(norm, dict) and 'mean' in norm and 'std' in norm:
        scale = 255. if norm.get('scale', '0-1') == '0-1' else 1.
        try:
            mean = [float(v) * scale for v in norm['mean']]
            std = [float(v) * scale for v in norm['std']]
        except (TypeError, ValueError):
            raise RecordError(f"{source}: 'bmaiu.input_normalization' must hold numeric "
                              'mean and std lists') from None
        if len(mean) != len(std) or not all(v > 0 for v in std):
            raise RecordError(f"{source}: 'bmaiu.input_normalization' has mismatched or "
                              'non-positive mean / std')
        return mean, std
    name = record['clean_data']
    if name not in BB_NORMALIZATION:
        raise RecordError(f'{source}: no input normalization known for clean_data {name!r} '
                          f'(known: {", ".join(sorted(BB_NORMALIZATION))})')
    return _to_pixel(BB_NORMALIZATION[name])


def _find_clean_cifar10(record: dict, root: str, data_root: Optional[str]) -> Optional[str]:
    candidates = [data_root] if data_root else [osp.join(root, record['data_path']),
                                                record['data_path']]
    for c in candidates:
        if c and osp.isfile(osp.join(c, 'cifar-10-batches-py', 'test_batch')):
            return c
    return None


def import_attack_record(path: str,
                         *,
                         root: Optional[str] = None,
                         backbone: Optional[dict] = None,
                         data_root: Optional[str] = None,
                         check_md5: bool = False,
                         evaluate: bool = True,
                         batch_size: int = 256,
                         device: Union[str, torch.device] = 'cpu') -> ImportedRecord:
    """Load a BackdoorBench attack record safely and evaluate it.

    Args:
        path (str): ``attack_result.pt`` or the ``record/<name>`` folder.
        root (str, optional): The folder holding ``record/`` (default: inferred from ``path``).
        backbone (dict, optional): mmpretrain backbone config; default: the record's own
            (``bmaiu.backbone``) or inferred from ``model_name`` and the stem's shape.
        data_root (str, optional): Folder holding ``cifar-10-batches-py/`` for BA; default: the
            record's ``data_path`` (relative to ``root``, then as given).
        check_md5 (bool): Check the CIFAR-10 md5 sums.
        evaluate (bool): Compute BA / ASR / PA.
        batch_size (int): Evaluation batch size.
        device (str | torch.device): Where the classifier runs.

    Returns:
        ImportedRecord: The classifier, metrics and bd test predictions.
    """
    from mmpretrain.registry import MODELS

    if osp.isdir(path):
        path = osp.join(path, RECORD_FILE)
    record = load_record(path)
    root = root or _default_root(path)
    backbone_state, w, b = bb_to_encoder(record['model_name'], record['model'], source=path)
    num_classes = int(record['num_classes'])
    if w.shape[0] != num_classes:
        raise RecordError(f'{path}: num_classes is {num_classes} but fc.weight has '
                          f'{w.shape[0]} rows')
    meta = record.get('bmaiu') or {}
    if backbone is not None:  # the user's own config: trusted as given
        cfg = _plain(dict(backbone))
    elif isinstance(meta.get('backbone'), dict):
        cfg = _record_backbone_cfg(meta['backbone'], path)
    else:
        cfg = infer_backbone_cfg(record['model_name'], backbone_state, source=path)
    try:
        net = MODELS.build(dict(cfg))
    except Exception as e:
        raise RecordError(f'{path}: cannot build backbone {cfg}: {e}') from None
    extra = [k for k in backbone_state if k not in net.state_dict()]
    if extra:
        raise RecordError(f'{path}: {len(extra)} model key(s) are not in the backbone {cfg} '
                          f'(e.g. {", ".join(extra[:3])})')
    net.load_state_dict(match_backbone_state(backbone_state, net, prefixes=('',), source=path))
    norm = _record_normalization(record, path)
    fc = nn.Linear(w.shape[1], num_classes)
    with torch.no_grad():
        fc.weight.copy_(w.float())
        fc.bias.copy_(b.float())
    clf = BackdoorBenchClassifier(net, fc, *norm).to(device)
    clf.eval()
    try:
        h, w_, c = (int(v) for v in record['img_size'])
        with torch.no_grad():
            feat_dim = clf.features(torch.zeros(1, c, h, w_, device=device)).shape[1]
    except RuntimeError as e:
        raise RecordError(f'{path}: the backbone does not run on {record["img_size"]} '
                          f'images: {str(e).splitlines()[0]}') from None
    if feat_dim != w.shape[1]:
        raise RecordError(f'{path}: the backbone gives {feat_dim} features, fc.weight expects '
                          f'{w.shape[1]}')
    out = ImportedRecord(path=path, root=root, record=record, backbone_cfg=cfg, classifier=clf,
                         normalization=norm)
    if not evaluate:
        return out
    if record['bd_test'] is not None:
        x, idx, bd_labels, orig = _load_bd_test(record, root, path)
        pred = clf.predict(x, batch_size)
        out.bd_images, out.bd_indices, out.bd_labels = x, idx, bd_labels
        out.bd_original_labels, out.bd_predictions = orig, pred
        out.metrics.update(_attack_metrics(pred, bd_labels, orig))
        out.metrics['num_bd_test'] = int(len(idx))
    else:
        out.notes.append('the record has no bd_test: no ASR / PA')
    clean, note = record_clean_test(record, root, data_root, check_md5)
    if clean is None:
        out.notes.append(note)
    else:
        imgs, labels = clean
        out.metrics['BA'] = percent(clf.predict(imgs, batch_size) == labels)
        out.metrics['num_clean_test'] = int(len(labels))
    return out


def record_clean_test(record: dict, root: str, data_root: Optional[str] = None,
                      check_md5: bool = False):
    """The clean CIFAR-10 test split a record was scored on: ``((images, labels), None)``,
    cut to the exporter's ``num_test`` when the record says so, or ``(None, why)`` when there is
    none to read (not CIFAR-10, or not found)."""
    if record['clean_data'] != 'cifar10':
        return None, f'clean data {record["clean_data"]!r} is not CIFAR-10: no BA'
    found = _find_clean_cifar10(record, root, data_root)
    if found is None:
        return None, (f'clean CIFAR-10 not found (data_path {record["data_path"]!r}); '
                      'pass data_root / --data-root for BA')
    imgs, labels = load_cifar10(found, 'test', check_md5)
    limit = (record.get('bmaiu') or {}).get('num_test')
    if _is_int(limit) and 0 < int(limit) < len(labels):
        imgs, labels = imgs[:int(limit)], labels[:int(limit)]
    return (imgs, labels), None


def write_encoder(imported: ImportedRecord, out: str, mean: Sequence[float] = CIFAR10_MEAN,
                  std: Sequence[float] = CIFAR10_STD, force: bool = False) -> str:
    """Save an imported record's encoder for this plugin's tools.

    The stem is re-expressed for the plugin's input normalization (``mean`` / ``std``), so the
    encoder fed that normalization gives the same features the record's classifier computes;
    the file is ``{'state_dict': {backbone.*, head.fc.*}, 'meta': {...}}`` and loads with
    ``--cfg-options encoder_checkpoint=FILE``.

    Args:
        imported (ImportedRecord): From :func:`import_attack_record`.
        out (str): Destination file.
        mean (Sequence[float]): The plugin's input mean, 0-255 scale.
        std (Sequence[float]): The plugin's input std, 0-255 scale.
        force (bool): Replace an existing file.

    Returns:
        str: ``out``.
    """
    if osp.exists(out) and not force:
        raise ConfigValueError(f'{out} exists; pass --force (force=True) to replace it')
    clf = imported.classifier
    state = OrderedDict((k, v.detach().cpu().clone()) for k, v in clf.backbone.state_dict().items())
    state['conv1.weight'] = rescale_stem(state['conv1.weight'], _to_unit(imported.normalization),
                                         _to_unit((mean, std)), 'the plugin\'s normalization')
    sd = OrderedDict(('backbone.' + k, v) for k, v in state.items())
    sd['head.fc.weight'] = clf.fc.weight.detach().cpu().clone()
    sd['head.fc.bias'] = clf.fc.bias.detach().cpu().clone()
    meta = dict(source=imported.path, backbone=_plain(imported.backbone_cfg),
                normalization=dict(mean=[float(v) for v in mean], std=[float(v) for v in std],
                                   scale='0-255'),
                model_name=imported.record['model_name'],
                clean_data=imported.record['clean_data'])
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save({'state_dict': sd, 'meta': meta}, out)
    return out
