"""Pre-activation ResNet (He et al., ECCV 2016) for 32x32 inputs, in BackdoorBench's layout."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from ._utils import StagedBackbone


class PreActBlock(nn.Module):
    """Pre-activation basic block: ``x + conv(relu(bn(conv(relu(bn(x))))))``.

    When the shape changes, the shortcut is a strided ``1x1`` convolution (no norm) applied to
    the pre-activated input ``relu(bn1(x))``, as in "Identity Mappings in Deep Residual
    Networks" (He et al., ECCV 2016).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the first convolution (and of the projection). Defaults to 1.
    """

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        # registration order = state-dict order (BackdoorBench maps records by position)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False))
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward.

        Args:
            x (torch.Tensor): ``(B, in_channels, H, W)``.

        Returns:
            torch.Tensor: ``(B, out_channels, H / stride, W / stride)``.
        """
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


@MODELS.register_module()
class PreActResNet(StagedBackbone):
    """PreAct ResNet-18/34 for CIFAR-sized images, the default model of BackdoorBench.

    A ``3x3`` stride-1 stem convolution (no norm, no max-pool) and four stages of
    :class:`PreActBlock` with widths ``base_channels * (1, 2, 4, 8)`` and strides
    ``(1, 2, 2, 2)``: a 32x32 input ends as a ``(B, 8 * base_channels, 4, 4)`` map.  As in the
    CIFAR implementation BackdoorBench builds for ``preactresnet18``, the last stage's output
    is not passed through a final BN-ReLU (He et al. add one on ImageNet).  Parameter names,
    order and shapes are BackdoorBench's (``conv1``, ``layerX.Y.bn1/conv1/bn2/conv2``,
    ``layerX.Y.shortcut.0``), so an encoder of depth 18 and width 64 exports as a BackdoorBench
    record (:func:`~bmaiu_plugin.interop.export_attack_record`).

    Example:
        >>> import torch
        >>> net = PreActResNet(depth=18)
        >>> [tuple(o.shape) for o in net(torch.rand(2, 3, 32, 32))]
        [(2, 512, 4, 4)]

    Args:
        depth (int): 18 (blocks per stage ``(2, 2, 2, 2)``) or 34 (``(3, 4, 6, 3)``).
        in_channels (int): Input image channels. Defaults to 3.
        base_channels (int): Width of the stem and the first stage; the stages are 1x, 2x, 4x
            and 8x of it. Defaults to 64 (512-d output, BackdoorBench's width).
        out_indices (Sequence[int]): Stages (0-3, negative counts from the end) whose outputs
            are returned. Defaults to ``(3, )``.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the stem and the
            first ``k`` stages (no gradient, norm layers in eval mode). Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to Kaiming for
            convolutions and ones for norm weights.
    """

    arch_settings = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
    width_multipliers = (1, 2, 4, 8)
    strides = (1, 2, 2, 2)

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 base_channels: int = 64,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm']),
                 ]) -> None:
        super().__init__(init_cfg)
        self._setup(depth, base_channels, out_indices, frozen_stages, norm_eval)

        self.conv1 = nn.Conv2d(in_channels, base_channels, 3, 1, 1, bias=False)
        channels = base_channels
        for i, num_blocks in enumerate(self.stage_blocks):
            width = base_channels * self.width_multipliers[i]
            blocks = []
            for b in range(num_blocks):
                blocks.append(PreActBlock(channels, width, self.strides[i] if b == 0 else 1))
                channels = width
            self.add_module(f'layer{i + 1}', nn.Sequential(*blocks))
            self.stage_names.append(f'layer{i + 1}')
        #: Channels of the last stage's output (512 at the default width).
        self.out_channels = channels
        self._freeze_stages()

    def stem_modules(self) -> Tuple[nn.Module, ...]:
        """The stem (frozen when ``frozen_stages >= 0``)."""
        return (self.conv1, )

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Run the stem and the stages.

        Args:
            x (torch.Tensor): Images, ``(B, in_channels, H, W)``.

        Returns:
            tuple[torch.Tensor]: Outputs of the stages in ``out_indices``, in stage order.
        """
        x = self.conv1(x)
        return self._run_stages(x, self.stage_names)
