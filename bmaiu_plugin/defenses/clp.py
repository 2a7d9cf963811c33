"""CLP: data-free Channel Lipschitzness-based Pruning (Zheng et al., ECCV 2022).

For every ``BatchNorm2d`` and the ``Conv2d`` that feeds it, the upper bound of the channel
Lipschitz constant (UCLC) of output channel ``k`` is the largest singular value of the conv
kernel ``W_k`` reshaped to ``(C_in, kh*kw)``, scaled by ``|gamma_k / sqrt(running_var_k)|``.
Channels whose UCLC exceeds ``mean + u * std`` of their layer are pruned by zeroing the BN
weight and bias. No data and no labels are needed.

Conventions, matching the original method:

* ``eps`` is **not** added to the running variance (a channel with ``running_var == 0`` gets an
  infinite UCLC; the layer's statistics are then not finite and nothing is pruned in it).
* ``std`` is torch's default, the **unbiased** (Bessel-corrected) standard deviation.
* Conv weights and BN running statistics are left untouched.
"""
from typing import Dict, Iterator, List, Tuple

import torch
import torch.nn as nn

from ..utils.errors import ConfigValueError
from ..utils.validate import check_number

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
