"""BackdoorBench's classifiers: which encoders map onto which ``model_name``, and how.

BackdoorBench loads a record by building ``generate_cls_model(record['model_name'],
num_classes)``, renaming the record's ``model`` entries *by position* to the built network's
state-dict names (the counts must agree), and calling a strict ``load_state_dict``.  A record
therefore loads only if its tensors have, in order, the shapes of the network that name builds.
The encoders that have such a network:

=====================  ===================================================  ================
``model_name``         plugin backbone                                      head
=====================  ===================================================  ================
``preactresnet18``     :class:`~bmaiu_plugin.models.backbones.PreActResNet`  ``linear.*``
                       depth 18, width 64 (BackdoorBench's CIFAR model)
``resnet18/34/50``     mmpretrain ``ResNet`` (torchvision's ImageNet stem),  ``fc.*``
                       BN, width 64, no deep stem
=====================  ===================================================  ================

Everything else is refused with the reason: mmpretrain's ``ResNet_CIFAR`` has a 3x3 stem with
no max-pool, but BackdoorBench's ``resnet18`` is torchvision's ImageNet network (7x7 stride-2
stem + max-pool), and BackdoorBench has no CIFAR-stem plain ResNet; the plugin's
``SENet_CIFAR`` (post-activation SE blocks, projection shortcuts with BN) is a different network
from BackdoorBench's ``senet18`` (pre-activation SE blocks, projections without BN).
"""
import re
from collections import OrderedDict
from typing import Dict, Tuple

import torch

from ..utils.errors import CheckpointError


class RecordError(CheckpointError):
    """A BackdoorBench record is malformed, unsafe or does not fit the model."""


#: What exports, for messages.
EXPORTABLE = ("PreActResNet depth 18 width 64 -> 'preactresnet18' (e.g. "
              'configs/selfsup/simclr_preactresnet18_1xb512-coslr-500e_cifar10.py); mmpretrain '
              "ResNet with the ImageNet stem, depth 18/34/50, width 64, BN -> 'resnet18/34/50'")

_WHY_NOT = {
    'ResNet_CIFAR': ("BackdoorBench's 'resnet18' is torchvision's ImageNet-stem network "
                     '(7x7 stride-2 conv + max-pool) and BackdoorBench builds no CIFAR-stem '
                     'plain ResNet'),
    'SENet_CIFAR': ("BackdoorBench's 'senet18' is a different network (pre-activation SE "
                    'blocks, projection shortcuts without BN)'),
}

# ------------------------------------------------------------------------------ torchvision
_BN = r'(weight|bias|running_mean|running_var|num_batches_tracked)'
_TV_KEY = re.compile(
    rf'^(conv1\.weight|bn1\.{_BN}'
    rf'|layer[1-4]\.\d+\.(conv[1-3]\.weight|bn[1-3]\.{_BN}'
    rf'|downsample\.0\.weight|downsample\.1\.{_BN})'
    r'|fc\.(weight|bias))$')
_BN_ORDER = {'weight': 0, 'bias': 1, 'running_mean': 2, 'running_var': 3,
             'num_batches_tracked': 4}


def _tv_order(key: str) -> tuple:
    """Sort key reproducing torchvision's ``ResNet.state_dict()`` order."""
    parts = key.split('.')
    last = _BN_ORDER[parts[-1]]
    if parts[0] in ('conv1', 'bn1'):
        return (0, 0, 0, int(parts[0] == 'bn1'), last)
    if parts[0] == 'fc':
        return (2, 0, 0, 0, last)
    name = parts[2]
    if name == 'downsample':
        sub = 10 + int(parts[3])
    else:  # conv1, bn1, conv2, bn2, conv3, bn3
        sub = 2 * (int(name[-1]) - 1) + int(name.startswith('bn'))
    return (1, int(parts[0][5:]), int(parts[1]), sub, last)


def encoder_to_torchvision(backbone_state: Dict[str, torch.Tensor], fc_weight: torch.Tensor,
                           fc_bias: torch.Tensor) -> 'OrderedDict[str, torch.Tensor]':
    """An mmpretrain ResNet backbone + linear head as a torchvision ``resnetNN`` state dict.

    Args:
        backbone_state (dict): The backbone's state dict, names without prefix.
        fc_weight (Tensor): ``(num_classes, D)`` head weight.
        fc_bias (Tensor): ``(num_classes,)`` head bias.

    Returns:
        OrderedDict: torchvision names in torchvision's order, ``fc.*`` last; CPU copies.

    Raises:
        RecordError: A name without torchvision equivalent (non-BN norm layers, deep stem, ...).
    """
    bad = [k for k in backbone_state if not _TV_KEY.match(k) or k.startswith('fc.')]
    if bad:
        raise RecordError(
            f'the encoder is not a torchvision-style ResNet: {len(bad)} parameter name(s) have '
            f'no torchvision equivalent (e.g. {", ".join(bad[:3])}); only mmpretrain ResNet / '
            'ResNet_CIFAR with BN layers and no deep stem map onto torchvision\'s resnetNN')
    out = OrderedDict((k, backbone_state[k].detach().cpu().clone())
                      for k in sorted(backbone_state, key=_tv_order))
    out['fc.weight'] = fc_weight.detach().cpu().clone().float()
    out['fc.bias'] = fc_bias.detach().cpu().clone().float()
    return out


def _strip_module(model_state: Dict[str, torch.Tensor]) -> dict:
    state = dict(model_state)
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state


def _split_head(state: dict, head: str, source: str) -> Tuple[torch.Tensor, torch.Tensor]:
    w, b = state.get(f'{head}.weight'), state.get(f'{head}.bias')
    if not isinstance(w, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise RecordError(f'{source}: the model has no {head}.weight / {head}.bias (the '
                          f'classifier head); its keys look like {", ".join(list(state)[:3])}')
    if w.dim() != 2 or b.shape != (w.shape[0],):
        raise RecordError(f'{source}: {head}.weight {tuple(w.shape)} and {head}.bias '
                          f'{tuple(b.shape)} are not a linear layer')
    return w, b


def torchvision_to_encoder(model_state: Dict[str, torch.Tensor], source: str = 'record'
                           ) -> Tuple['OrderedDict[str, torch.Tensor]', torch.Tensor,
                                      torch.Tensor]:
    """Split a torchvision-style ResNet classifier state dict into backbone and head.

    A ``module.`` prefix (``DataParallel``) on every key is dropped.

    Args:
        model_state (dict): The classifier's state dict (a record's ``model``).
        source (str): Name of the file, for messages.

    Returns:
        tuple: ``(backbone_state, fc_weight, fc_bias)``; the backbone's names are mmpretrain's
        ``ResNet`` / ``ResNet_CIFAR`` names (identical to torchvision's with BN layers).
    """
    state = _strip_module(model_state)
    w, b = _split_head(state, 'fc', source)
    bad = [k for k in state if not _TV_KEY.match(k)]
    if bad:
        raise RecordError(
            f'{source}: the model is not a torchvision-style ResNet: {len(bad)} key(s) have no '
            f'mmpretrain ResNet equivalent (e.g. {", ".join(bad[:3])})')
    backbone = OrderedDict((k, state[k]) for k in sorted(state, key=_tv_order)
                           if not k.startswith('fc.'))
    return backbone, w, b


# ------------------------------------------------------------------------------ PreAct
def _preact(depth: int = 18, base_channels: int = 64):
    from ..models.backbones import PreActResNet
    return PreActResNet(depth=depth, base_channels=base_channels)


def _preact_to_encoder(model_state: Dict[str, torch.Tensor], source: str):
    state = _strip_module(model_state)
    w, b = _split_head(state, 'linear', source)
    stem = state.get('conv1.weight')
    if not isinstance(stem, torch.Tensor) or stem.dim() != 4:
        raise RecordError(f'{source}: a preactresnet18 model has a conv1.weight stem')
    expect = _preact(18, int(stem.shape[0])).state_dict()
    body = [k for k in state if not k.startswith('linear.')]
    if set(body) != set(expect):
        odd = sorted(set(body) ^ set(expect))
        raise RecordError(f'{source}: the model is not a PreAct ResNet-18: {len(odd)} key(s) '
                          f'differ from its layout (e.g. {", ".join(odd[:3])})')
    return OrderedDict((k, state[k]) for k in expect), w, b


# ------------------------------------------------------------------------------ the mapping
def bb_model_name(backbone_cfg: dict) -> str:
    """BackdoorBench's ``model_name`` for an encoder config.

    Args:
        backbone_cfg (dict): mmpretrain backbone config.

    Returns:
        str: ``'preactresnet18'`` or ``'resnet18'`` / ``'resnet34'`` / ``'resnet50'``.

    Raises:
        RecordError: BackdoorBench builds no network this encoder loads into; the message
            says why and which encoders export.
    """
    kind = backbone_cfg.get('type')
    depth = backbone_cfg.get('depth')
    widths = [backbone_cfg.get(k, 64) for k in ('stem_channels', 'base_channels')]
    problem = None
    if kind == 'PreActResNet':
        width = backbone_cfg.get('base_channels', 64)
        if depth != 18 or width != 64 or backbone_cfg.get('in_channels', 3) != 3:
            problem = (f'a PreActResNet of depth {depth} and width {width}: BackdoorBench builds '
                       'only depth 18, width 64, RGB')
        else:
            return 'preactresnet18'
    elif kind == 'ResNet':
        norm = (backbone_cfg.get('norm_cfg') or {}).get('type', 'BN')
        if depth not in (18, 34, 50) or widths != [64, 64] or norm != 'BN' \
                or backbone_cfg.get('deep_stem', False) or backbone_cfg.get('in_channels', 3) != 3:
            problem = (f'a ResNet of depth {depth}, widths {widths}, norm {norm}: BackdoorBench '
                       "builds torchvision's resnet18/34/50 (width 64, BN, plain stem, RGB)")
        else:
            return f'resnet{depth}'
    else:
        problem = _WHY_NOT.get(kind, f'BackdoorBench has no network for {kind} encoders')
    raise RecordError(f'{kind} encoders cannot be exported as BackdoorBench records ({problem}); '
                      f'encoders that export: {EXPORTABLE}')


def encoder_to_bb(model_name: str, backbone_state: Dict[str, torch.Tensor],
                  fc_weight: torch.Tensor, fc_bias: torch.Tensor
                  ) -> 'OrderedDict[str, torch.Tensor]':
    """Backbone + linear head as the state dict of BackdoorBench's ``model_name`` network.

    Returns:
        OrderedDict: Names and order of that network (``fc.*`` / ``linear.*`` last), CPU
        copies.
    """
    if model_name.startswith('resnet'):
        return encoder_to_torchvision(backbone_state, fc_weight, fc_bias)
    head = {'linear.weight': fc_weight, 'linear.bias': fc_bias}
    body, _, _ = _preact_to_encoder({**backbone_state, **head}, 'the encoder')
    out = OrderedDict((k, v.detach().cpu().clone()) for k, v in body.items())
    out.update((k, v.detach().cpu().clone().float()) for k, v in head.items())
    return out


def check_loadable(model_name: str, model_state: Dict[str, torch.Tensor], num_classes: int
                   ) -> None:
    """Refuse a state dict that BackdoorBench's positional renaming + strict load would reject.

    The reference is the network ``model_name`` builds: torchvision's ``resnetNN`` or a
    :class:`PreActResNet` with a ``linear`` head (BackdoorBench's ``preactresnet18`` layout).

    Raises:
        RecordError: Different entry count, or an entry whose shape differs at its position.
    """
    if model_name.startswith('resnet'):
        import torchvision
        ref = getattr(torchvision.models, model_name)(num_classes=num_classes).state_dict()
    else:
        ref = OrderedDict(_preact().state_dict())
        ref['linear.weight'] = torch.empty(num_classes, 512)
        ref['linear.bias'] = torch.empty(num_classes)
    if len(ref) != len(model_state):
        raise RecordError(f"the exported model has {len(model_state)} entries, BackdoorBench's "
                          f'{model_name} has {len(ref)}')
    for i, ((k, v), (rk, rv)) in enumerate(zip(model_state.items(), ref.items())):
        if tuple(v.shape) != tuple(rv.shape):
            raise RecordError(f'entry {i} ({k}) has shape {tuple(v.shape)}; BackdoorBench\'s '
                              f'{model_name} expects {tuple(rv.shape)} for {rk} there')


def bb_to_encoder(model_name: str, model_state: Dict[str, torch.Tensor],
                  source: str = 'record') -> Tuple['OrderedDict[str, torch.Tensor]',
                                                   torch.Tensor, torch.Tensor]:
    """A record's ``model`` split into ``(backbone_state, head_weight, head_bias)``."""
    if model_name.lower() == 'preactresnet18':
        return _preact_to_encoder(model_state, source)
    return torchvision_to_encoder(model_state, source)


def infer_backbone_cfg(model_name: str, backbone_state: Dict[str, torch.Tensor],
                       source: str = 'record') -> dict:
    """The mmpretrain backbone config of a record's network.

    ``preactresnet18`` is :class:`PreActResNet`; for ``resnetNN`` the depth comes from the
    name, a 7x7 stem is mmpretrain's ``ResNet`` (torchvision's own stem), a 3x3 stem
    ``ResNet_CIFAR``; widths come from the tensors.
    """
    stem = backbone_state.get('conv1.weight')
    if model_name.lower() == 'preactresnet18':
        return dict(type='PreActResNet', depth=18, base_channels=int(stem.shape[0]))
    m = re.fullmatch(r'resnet(18|34|50|101|152)', model_name.lower())
    if m is None:
        raise RecordError(
            f'{source}: model_name {model_name!r} cannot be imported: only preactresnet18 and '
            'torchvision-style ResNets (resnet18/34/50/101/152) map onto a plugin backbone; '
            'pass a backbone config if the keys follow one of these layouts anyway')
    first = backbone_state.get('layer1.0.conv1.weight')
    if stem is None or first is None or stem.dim() != 4:
        raise RecordError(f'{source}: the model has no conv1.weight / layer1.0.conv1.weight')
    kernel = int(stem.shape[-1])
    if kernel not in (3, 7):
        raise RecordError(f'{source}: a {kernel}x{kernel} stem is neither torchvision\'s (7x7) '
                          'nor the CIFAR one (3x3)')
    return dict(type='ResNet' if kernel == 7 else 'ResNet_CIFAR', depth=int(m.group(1)),
                stem_channels=int(stem.shape[0]), base_channels=int(first.shape[0]),
                norm_cfg=dict(type='BN'))
