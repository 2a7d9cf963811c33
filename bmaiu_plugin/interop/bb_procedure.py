"""BackdoorBench's way of loading and scoring a record, re-stated to check records without it.

What every BackdoorBench defense script does with ``record/<name>/attack_result.pt`` (its
``utils/save_load_attack.py::load_attack_result`` and the evaluation that follows), written
from that documented behaviour, with no BackdoorBench code:

1. build ``generate_cls_model(record['model_name'], record['num_classes'])``;
2. drop a ``module.`` prefix, require as many entries as the network's state dict, rename the
   record's entries *by position* to the network's names, ``load_state_dict`` (strict);
3. feed images as ``Normalize(mean, std)(ToTensor()(img))`` with BackdoorBench's constants for
   ``clean_data``; the triggered test set is the PNG of every ``original_index_array`` entry
   (paths relative to the folder holding ``record/``), labelled with its backdoor target;
4. ASR = accuracy on the triggered set against the target, PA ("robust accuracy") against the
   original labels, BA = accuracy on the clean test split.

The networks are built here, not from the plugin's backbones, so a record checked by
:func:`bb_evaluate` has been read the way BackdoorBench reads it, not the way it was written:
torchvision's ``resnet18/34/50`` and a PreAct ResNet-18 with BackdoorBench's module layout
(``conv1``, ``layerN`` of blocks ``bn1, conv1, bn2, conv2[, shortcut]``, ``avgpool``,
``linear``).  The record itself is read tensors-only
(:func:`~bmaiu_plugin.interop.backdoorbench.load_record`).
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .bb_models import RecordError

__all__ = ['bb_generate_cls_model', 'bb_load_model', 'bb_evaluate']


class _BBPreActUnit(nn.Module):
    """One pre-activation unit; ``shortcut`` (a 1x1 conv) only where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        a = F.relu(self.bn1(x))
        skip = self.shortcut(a) if hasattr(self, 'shortcut') else x
        return self.conv2(F.relu(self.bn2(self.conv1(a)))) + skip


class _BBPreActResNet18(nn.Module):
    """``preactresnet18``: 3x3 stem, stages of 2 units (64, 128, 256, 512; strides 1, 2, 2,
    2), adaptive average pool, ``linear`` head; no BN-ReLU after the last unit."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        cin = 64
        for i, (cout, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2))):
            setattr(self, f'layer{i + 1}', nn.Sequential(_BBPreActUnit(cin, cout, stride),
                                                         _BBPreActUnit(cout, cout, 1)))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        for i in range(1, 5):
            x = getattr(self, f'layer{i}')(x)
        return self.linear(torch.flatten(self.avgpool(x), 1))


def bb_generate_cls_model(model_name: str, num_classes: int = 10) -> nn.Module:
    """The network BackdoorBench builds for ``model_name`` (the names this bridge exports).

    Raises:
        RecordError: A ``model_name`` outside ``preactresnet18`` / ``resnet18/34/50``.
    """
    if model_name == 'preactresnet18':
        return _BBPreActResNet18(num_classes)
    if model_name in ('resnet18', 'resnet34', 'resnet50'):
        import torchvision
        return getattr(torchvision.models, model_name)(num_classes=num_classes)
    raise RecordError(f'model_name {model_name!r}: this check builds preactresnet18 and '
                      'resnet18/34/50')


def bb_load_model(record: dict) -> nn.Module:
    """Steps 1-2: the record's network, filled by position with a strict load, in eval mode.

    Raises:
        RecordError: The entry counts differ or a strict load fails (the message is
            BackdoorBench's failure, in one line).
    """
    state = dict(record['model'])
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    model = bb_generate_cls_model(record['model_name'], int(record['num_classes']))
    names = list(model.state_dict())
    if len(names) != len(state):
        raise RecordError(f"state_dict key length not match: the record has {len(state)} "
                          f"entries, {record['model_name']} has {len(names)}")
    renamed = OrderedDict(zip(names, state.values()))
    try:
        model.load_state_dict(renamed, strict=True)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise RecordError(f"{record['model_name']} cannot load the record: {first}") from None
    return model.eval()


def _to_input(imgs: torch.Tensor, mean, std) -> torch.Tensor:
    """``Normalize(mean, std)(ToTensor()(img))`` on a uint8 ``(N, C, H, W)`` batch."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (imgs.float() / 255. - m) / s


@torch.no_grad()
def _predict(model: nn.Module, imgs: torch.Tensor, mean, std, batch_size: int) -> torch.Tensor:
    out = [model(_to_input(imgs[i:i + batch_size], mean, std)).argmax(1)
           for i in range(0, len(imgs), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def _read_bd_test(record: dict, root: str):
    """Step 3's triggered set: the PNGs of ``original_index_array`` that ``poison_indicator``
    marks, with target and true label (read as the importer reads them: checked paths, sizes)."""
    from .backdoorbench import _load_bd_test
    x, index, targets, labels = _load_bd_test(record, root, 'record')
    keep = torch.from_numpy(np.asarray(record['bd_test']['poison_indicator'])[index.numpy()]
                            == 1)
    return x[keep], targets[keep], labels[keep]


def bb_evaluate(path: str, root: Optional[str] = None,
                clean_test: Optional[tuple] = None, batch_size: int = 256) -> Dict[str, float]:
    """Load a record as BackdoorBench does and score it (steps 1-4).

    Args:
        path (str): ``attack_result.pt`` or its ``record/<name>`` folder.
        root (str, optional): The folder holding ``record/`` (where BackdoorBench runs);
            default: inferred from ``path``.
        clean_test (tuple, optional): ``(uint8 images (N, 3, H, W), labels)`` of the clean
            test split for BA (the first N images of the split when the record holds fewer).
        batch_size (int): Evaluation batch size.

    Returns:
        dict: ``ASR``, ``PA``, ``num_bd_test`` and, with ``clean_test``, ``BA`` (percent);
        ``predictions_bd`` (the triggered set's predictions).
    """
    from .backdoorbench import BB_NORMALIZATION, RECORD_FILE, _default_root, load_record
    if osp.isdir(path):
        path = osp.join(path, RECORD_FILE)
    record = load_record(path)
    root = root or _default_root(path)
    model = bb_load_model(record)
    if record['clean_data'] not in BB_NORMALIZATION:
        raise RecordError(f"no BackdoorBench normalization for {record['clean_data']!r}")
    mean, std = BB_NORMALIZATION[record['clean_data']]
    x, targets, labels = _read_bd_test(record, root)
    pred = _predict(model, x, mean, std, batch_size)
    out = dict(ASR=100. * (pred == targets).float().mean().item() if len(x) else float('nan'),
               PA=100. * (pred == labels).float().mean().item() if len(x) else float('nan'),
               num_bd_test=int(len(x)), predictions_bd=pred)
    if clean_test is not None:
        imgs, y = clean_test
        out['BA'] = 100. * (_predict(model, imgs, mean, std, batch_size) == y).float().mean().item()
    return out
