"""CLP: data-free Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022;
github.com/rkteddy/channel-Lipschitzness-based-pruning).

For every ``Conv2d`` -> ``BatchNorm2d`` pair, the upper bound of the channel Lipschitz constant
(UCLC) of output channel ``k`` is the largest singular value of its kernel reshaped to
``(C_in, kh*kw)`` times ``|gamma_k / sqrt(running_var_k)|``; channels above ``mean + u * std``
of their layer are pruned (BN weight and bias set to 0).  As the original: no ``eps`` on the
running variance, the unbiased ``std``, conv weights and BN statistics left untouched.
"""
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..models.finetune_base import frozen_copy
from ..registry import MODELS
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number
from .base import BaseDefense

__all__ = ['conv_bn_pairs', 'clp_scores', 'clp_prune']


def conv_bn_pairs(model: nn.Module) -> Iterator[Tuple[str, nn.Conv2d, str, nn.BatchNorm2d]]:
    """Pair every ``BatchNorm2d`` with the ``Conv2d`` that precedes it.

    The pairing is "the last ``Conv2d`` seen before this BN in ``model.named_modules()`` order",
    which is the registration order of torchvision's and mmpretrain's ResNets (``conv1, bn1``,
    ``downsample.0, downsample.1``, ...). Each pair is checked: the conv's ``out_channels``
    must equal the BN's ``num_features``.

    Args:
        model (nn.Module): The network (for SSL: the encoder only).

    Yields:
        tuple[str, nn.Conv2d, str, nn.BatchNorm2d]: ``(conv_name, conv, bn_name, bn)``.

    Raises:
        ConfigValueError: A BN has no preceding conv, the channel counts differ, or the BN keeps
            no running statistics.
    """
    last_conv = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            last_conv = (name, module)
        elif isinstance(module, nn.BatchNorm2d):
            if last_conv is None:
                raise ConfigValueError(
                    f"CLP: BatchNorm2d '{name}' has no Conv2d before it in named_modules() order; "
                    'CLP needs every BatchNorm2d to follow the Conv2d that feeds it')
            conv_name, conv = last_conv
            if conv.out_channels != module.num_features:
                raise ConfigValueError(
                    f"CLP: cannot pair BatchNorm2d '{name}' ({module.num_features} channels) with "
                    f"the last Conv2d before it, '{conv_name}' ({conv.out_channels} output "
                    'channels); the conv->BN pairing by named_modules() order does not hold for '
                    'this model')
            if module.running_var is None:
                raise ConfigValueError(
                    f"CLP: BatchNorm2d '{name}' has no running statistics "
                    '(track_running_stats=False); CLP needs the trained running_var')
            yield conv_name, conv, name, module


@torch.no_grad()
def _uclc(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """UCLC per output channel of one conv/BN pair, a float32 CPU tensor ``(C_out,)``."""
    w = conv.weight.detach().float().cpu()
    mats = w.reshape(w.shape[0], w.shape[1], -1)  # (C_out, C_in/groups, kh*kw)
    sigma_max = torch.linalg.svdvals(mats)[:, 0]
    std = bn.running_var.detach().float().cpu().sqrt()  # no eps, as in the original
    gamma = (bn.weight.detach().float().cpu() if bn.weight is not None
             else torch.ones_like(std))
    # |gamma/std| is a positive scalar per channel, so it factors out of the singular values
    return sigma_max * (gamma / std).abs()


def clp_scores(model: nn.Module) -> Dict[str, torch.Tensor]:
    """UCLC of every channel of every conv-BN pair.

    Args:
        model (nn.Module): The network (for SSL: the encoder, with its trained BN buffers).

    Returns:
        dict[str, Tensor]: BN module name -> float32 CPU tensor ``(num_features,)`` with
        ``UCLC_k = sigma_max(reshape(W_k, (C_in, kh*kw))) * |gamma_k / sqrt(running_var_k)|``.

    Raises:
        ConfigValueError: See :func:`conv_bn_pairs`.
    """
    return {bn_name: _uclc(conv, bn) for _, conv, bn_name, bn in conv_bn_pairs(model)}


def clp_prune(model: nn.Module, u: float = 3.0) -> Dict[str, List[int]]:
    """Prune, in place, the channels whose UCLC is an upper outlier of their layer.

    In each BN layer, channels with ``UCLC > mean + u * std`` (``std`` unbiased, as torch's
    ``Tensor.std()`` used by the original) get their BN weight and bias set to 0.

    Args:
        model (nn.Module): The network to prune (modified in place).
        u (float): Threshold in standard deviations; the paper's default is 3. Must be >= 0.

    Returns:
        dict[str, list[int]]: For every BN layer (name), the sorted indices of the pruned
        channels (possibly empty).

    Raises:
        ConfigValueError: ``u`` is negative or not a finite number, a BN cannot be paired
            with its conv (see :func:`conv_bn_pairs`), or a BN to prune has no affine weights.
    """
    u = check_number('CLP threshold u', u, 0)
    pruned: Dict[str, List[int]] = {}
    for _, conv, bn_name, bn in conv_bn_pairs(model):
        scores = _uclc(conv, bn)
        thresh = scores.mean() + u * scores.std()
        idx = torch.nonzero(scores > thresh).flatten()
        if idx.numel() and bn.weight is None:
            raise ConfigValueError(
                f"CLP: BatchNorm2d '{bn_name}' has affine=False, so its channels cannot be pruned")
        if idx.numel():
            with torch.no_grad():
                dev_idx = idx.to(bn.weight.device)
                bn.weight[dev_idx] = 0
                bn.bias[dev_idx] = 0
        pruned[bn_name] = idx.tolist()
    return pruned


def _u_name(u: float) -> str:
    return f'{u:g}'


@MODELS.register_module()
class CLPDefense(BaseDefense):
    """CLP (Zheng et al., ECCV 2022): data-free Channel-Lipschitzness-based pruning of an encoder.

    After :meth:`init_weights` has loaded the suspect encoder, ``backbone`` is a copy of it pruned
    with :func:`~bmaiu_plugin.defenses.clp.clp_prune` (channels whose UCLC exceeds
    ``mean + u * std`` of their layer get BN weight and bias 0).  There is no training: evaluate
    with ``tools/test.py CONFIG ENCODER_CKPT``.

    Args:
        backbone (dict): Encoder config; must match the suspect checkpoint.
        u (float): Threshold in standard deviations, > 0. The paper's default: 3.
        u_sweep (Sequence[float]): Further thresholds; one more defended encoder per value,
            probed as ``defended_u<value>`` (BackdoorBench sweeps 0..10).
        **kwargs: :class:`EncoderFinetuneBase` arguments (``encoder_checkpoint``, ``mean``,
            ``std``, ``seed``, ...).
    """

    def __init__(self, backbone: dict, u: float = 3., u_sweep: Sequence[float] = (),
                 **kwargs):
        kwargs.setdefault('freeze_bn', False)
        super().__init__(backbone, frozen_copies=('suspect',), **kwargs)
        self.u = check_number('CLP u', u, 0, inclusive=(False, True))
        if isinstance(u_sweep, (int, float)) or u_sweep is None:
            raise ConfigValueError(f'CLP u_sweep must be a list of numbers > 0, got {u_sweep!r}')
        sweep = []
        for v in u_sweep:
            v = check_number('CLP u_sweep value', v, 0, inclusive=(False, True))
            if v != self.u and v not in sweep:
                sweep.append(v)
        self.u_sweep = sweep
        self.sweep = nn.ModuleDict({_u_name(v).replace('.', '_'): frozen_copy(self.backbone)
                                    for v in sweep})
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.pruned: Optional[Dict[str, Dict[str, List[int]]]] = None
        self.clp_seconds = 0.

    def init_weights(self):
        """Load the suspect encoder, then prune the defended copies."""
        super().init_weights()
        self.apply_clp()

    @torch.no_grad()
    def apply_clp(self) -> None:
        """(Re)build every defended encoder from the suspect and prune it (idempotent)."""
        t0 = time.perf_counter()
        state = self.suspect.state_dict()
        self.backbone.load_state_dict(state)
        self.pruned = {_u_name(self.u): clp_prune(self.backbone, self.u)}
        for v in self.u_sweep:
            enc = self.sweep[_u_name(v).replace('.', '_')]
            enc.load_state_dict(state)
            self.pruned[_u_name(v)] = clp_prune(enc, v)
        self.clp_seconds = time.perf_counter() - t0

    def loss(self, imgs, data_samples=None):
        raise RuntimeError('CLP is data-free and has no training: evaluate it with '
                           'tools/test.py CONFIG ENCODER_CKPT')

    def defended_state_dict(self) -> Dict[str, torch.Tensor]:
        """The pruned encoder's (``u``) backbone state dict."""
        if self.pruned is None:
            self.apply_clp()
        return self.backbone.state_dict()

    def probe_encoders(self) -> Dict[str, dict]:
        """``suspect``, ``defended`` (pruned with ``u``) and ``defended_u<v>`` per sweep value."""
        if self.pruned is None:
            self.apply_clp()
        out = dict(suspect=dict(encoder=self.suspect), defended=dict(encoder=self.backbone))
        for v in self.u_sweep:
            out[f'defended_u{_u_name(v)}'] = dict(encoder=self.sweep[_u_name(v).replace('.', '_')])
        return out

    def _prune_summary(self, pruned: Dict[str, List[int]]) -> dict:
        channels = {name: m.num_features for name, m in self.suspect.named_modules()
                    if isinstance(m, nn.BatchNorm2d)}
        n = sum(len(v) for v in pruned.values())
        total = sum(channels[k] for k in pruned)
        return dict(pruned_channels=n, channels=total,
                    pruned_share=round(100. * n / max(total, 1), 3),
                    layers_pruned=sum(1 for v in pruned.values() if v), layers=len(pruned))

    def defense_report(self) -> dict:
        """``clp``: what was pruned (per layer and in total, per ``u``) and the time it took."""
        if self.pruned is None:
            self.apply_clp()
        main = self.pruned[_u_name(self.u)]
        out = dict(u=self.u, **self._prune_summary(main),
                   per_layer={k: len(v) for k, v in main.items()},
                   seconds=round(self.clp_seconds, 3))
        if self.u_sweep:
            out['sweep'] = {k: self._prune_summary(v) for k, v in self.pruned.items()}
        return dict(clp=out)
