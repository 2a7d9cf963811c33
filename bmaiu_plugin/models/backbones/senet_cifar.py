"""SENet (ResNet basic blocks with squeeze-and-excitation) for 32x32 inputs."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, constant_init
from mmpretrain.registry import MODELS

from ._utils import StagedBackbone


class SELayer(BaseModule):
    """Squeeze-and-excitation: rescale channels by a gate computed from their global means.

    ``global-avg-pool -> 1x1 conv (C -> C/ratio) -> ReLU -> 1x1 conv (C/ratio -> C) ->
    sigmoid -> x * gate``.

    Args:
        channels (int): Channels of the input (and output).
        ratio (int): Channel reduction of the bottleneck; the squeezed width is
            ``max(1, channels // ratio)``. Defaults to 16.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None.
    """

    def __init__(self, channels: int, ratio: int = 16,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        squeezed = max(1, channels // ratio)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeezed, channels, kernel_size=1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the channels of ``x``.

        Args:
            x (torch.Tensor): Feature map, ``(B, C, H, W)``.

        Returns:
            torch.Tensor: ``x`` scaled per sample and channel, same shape.
        """
        w = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * w


class SEBasicBlock(BaseModule):
    """ResNet basic block with an SE gate on the residual branch before the addition.

    ``conv3x3(stride)-BN-ReLU-conv3x3-BN -> SE -> + shortcut -> ReLU``; the shortcut is a
    strided ``1x1 conv-BN`` projection when the shape changes, else the identity.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the first convolution (and of the projection). Defaults to 1.
        se_ratio (int): Reduction ratio of the SE layer. Defaults to 16.
        conv_cfg (dict, optional): Convolution layer config. Defaults to None.
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to None.
    """

    expansion = 1

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 se_ratio: int = 16,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        self.conv1 = build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size=3,
                                      stride=stride, padding=1, bias=False)
        self.bn1 = build_norm_layer(norm_cfg, out_channels)[1]
        self.conv2 = build_conv_layer(conv_cfg, out_channels, out_channels, kernel_size=3,
                                      stride=1, padding=1, bias=False)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]
        self.se = SELayer(out_channels, ratio=se_ratio)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                build_conv_layer(conv_cfg, in_channels, out_channels, kernel_size=1,
                                 stride=stride, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual forward.

        Args:
            x (torch.Tensor): ``(B, in_channels, H, W)``.

        Returns:
            torch.Tensor: ``(B, out_channels, H / stride, W / stride)``.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + identity)


@MODELS.register_module()
class SENet_CIFAR(StagedBackbone):
    """SENet-18/34 for CIFAR-sized images.

    A ResNet of :class:`SEBasicBlock` units with the CIFAR stem (one ``3x3`` stride-1
    convolution, no max-pool) and four stages of widths ``base_channels * (1, 2, 4, 8)`` and
    strides ``(1, 2, 2, 2)``: a 32x32 input ends as a ``(B, 8 * base_channels, 4, 4)`` map
    (512 channels at the default width).  Module names follow mmpretrain's ``ResNet``
    (``conv1``, ``norm1``, ``layer1`` ... ``layer4``).

    Example:
        >>> import torch
        >>> net = SENet_CIFAR(depth=18)
        >>> [tuple(o.shape) for o in net(torch.rand(2, 3, 32, 32))]
        [(2, 512, 4, 4)]

    Args:
        depth (int): 18 (blocks per stage ``(2, 2, 2, 2)``) or 34 (``(3, 4, 6, 3)``).
        in_channels (int): Input image channels. Defaults to 3.
        stem_channels (int, optional): Output channels of the stem; defaults to
            ``base_channels``.
        base_channels (int): Width of the first stage; the others are 2x, 4x and 8x of it.
            Defaults to 64 (512-d output).
        se_ratio (int): Reduction ratio of every SE layer. Defaults to 16.
        out_indices (Sequence[int]): Stages (0-3, negative counts from the end) whose outputs
            are returned. Defaults to ``(3, )``.
        frozen_stages (int): As in mmpretrain's ``ResNet``: ``-1`` freezes nothing, ``0`` the
            stem, ``k`` the stem and the first ``k`` stages (parameters without gradient, norm
            layers in eval mode). Defaults to -1.
        conv_cfg (dict, optional): Convolution layer config. Defaults to None (``nn.Conv2d``).
        norm_cfg (dict): Norm layer config. Defaults to ``dict(type='BN')``.
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Defaults to False.
        zero_init_residual (bool): Zero-initialize the last norm of every block so blocks
            start as identities. Defaults to False.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to Kaiming for
            convolutions and ones for norm weights.
    """

    arch_settings = {
        18: (2, 2, 2, 2),
        34: (3, 4, 6, 3),
    }
    width_multipliers = (1, 2, 4, 8)
    strides = (1, 2, 2, 2)

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: Optional[int] = None,
                 base_channels: int = 64,
                 se_ratio: int = 16,
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 zero_init_residual: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm']),
                 ]) -> None:
        super().__init__(init_cfg)
        self._setup(depth, base_channels, out_indices, frozen_stages, norm_eval)
        self.stem_channels = stem_channels or base_channels
        self.zero_init_residual = zero_init_residual

        # CIFAR stem: 3x3 stride-1 conv, no max-pool
        self.conv1 = build_conv_layer(conv_cfg, in_channels, self.stem_channels, kernel_size=3,
                                      stride=1, padding=1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, self.stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)

        channels = self.stem_channels
        for i, num_blocks in enumerate(self.stage_blocks):
            width = base_channels * self.width_multipliers[i]
            blocks = []
            for b in range(num_blocks):
                blocks.append(SEBasicBlock(channels, width,
                                           stride=self.strides[i] if b == 0 else 1,
                                           se_ratio=se_ratio, conv_cfg=conv_cfg,
                                           norm_cfg=norm_cfg))
                channels = width
            name = f'layer{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
        #: Channels of the last stage's output (512 at the default width).
        self.out_channels = channels

        self._freeze_stages()

    @property
    def norm1(self) -> nn.Module:
        """nn.Module: The stem's norm layer."""
        return getattr(self, self.norm1_name)

    def init_weights(self) -> None:
        """Apply ``init_cfg``, then zero the last norm of each block if ``zero_init_residual``."""
        super().init_weights()
        if (isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained'):
            return
        if self.zero_init_residual:
            for m in self.modules():
                if isinstance(m, SEBasicBlock):
                    constant_init(m.bn2, 0)

    def stem_modules(self) -> Tuple[nn.Module, ...]:
        """The stem (frozen when ``frozen_stages >= 0``)."""
        return (self.conv1, self.norm1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Run the stem and the stages.

        Args:
            x (torch.Tensor): Images, ``(B, in_channels, H, W)``.

        Returns:
            tuple[torch.Tensor]: Outputs of the stages in ``out_indices``, in stage order; the
            last stage gives ``(B, 8 * base_channels, H / 8, W / 8)``.
        """
        x = self.relu(self.norm1(self.conv1(x)))
        return self._run_stages(x, self.stage_names)
