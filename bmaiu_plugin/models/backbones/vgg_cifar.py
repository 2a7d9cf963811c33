"""VGG for 32x32 inputs (the CIFAR form used in SSL backdoor papers' architecture studies)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmpretrain.registry import MODELS

from ._utils import StagedBackbone


@MODELS.register_module()
class VGG_CIFAR(StagedBackbone):
    """VGG with BatchNorm for CIFAR-sized images.

    Five stages of ``conv3x3-BN-ReLU`` units, each stage closed by a 2x2 max-pool, with widths
    ``base_channels * (1, 2, 4, 8, 8)``.  A 32x32 input therefore ends as a
    ``(B, 8 * base_channels, 1, 1)`` map (512 channels at the default width), the usual CIFAR
    VGG feature.  There are no fully-connected layers: the SSL neck or a linear probe follows.

    Example:
        >>> import torch
        >>> net = VGG_CIFAR(depth=11)
        >>> [tuple(o.shape) for o in net(torch.rand(2, 3, 32, 32))]
        [(2, 512, 1, 1)]

    Args:
        depth (int): Number of weight layers of the classic VGG (its 3 FC layers included), one
            of 11, 13, 16 and 19.  Convolutions per stage: 11: (1, 1, 2, 2, 2),
            13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4).
        in_channels (int): Input image channels. Defaults to 3.
        base_channels (int): Width of the first stage; the others are 2x, 4x, 8x and 8x of it.
            Defaults to 64 (512-d output).
        out_indices (Sequence[int]): Stages (0-4, negative counts from the end) whose outputs
            are returned. Defaults to ``(4, )``.
        frozen_stages (int): Number of leading stages whose parameters are frozen and whose
            norm layers stay in eval mode (as in mmpretrain's ``VGG``); ``-1`` or ``0`` freezes
            nothing. Defaults to -1.
        conv_cfg (dict, optional): Convolution layer config. Defaults to None (``nn.Conv2d``).
        norm_cfg (dict, optional): Norm layer config; None builds VGG without norm layers (the
            convolutions then carry a bias). Defaults to ``dict(type='BN')``.
        norm_eval (bool): Keep every BatchNorm in eval mode during training (frozen running
            statistics). Defaults to False.
        with_last_pool (bool): Keep the max-pool closing the last stage (``1x1`` output on
            32x32 inputs); False leaves a ``2x2`` map. Defaults to True.
        init_cfg (dict | list[dict], optional): Initialization config. Defaults to Kaiming for
            convolutions and ones for norm weights.
    """

    arch_settings = {
        11: (1, 1, 2, 2, 2),
        13: (2, 2, 2, 2, 2),
        16: (2, 2, 3, 3, 3),
        19: (2, 2, 4, 4, 4),
    }
    width_multipliers = (1, 2, 4, 8, 8)

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 base_channels: int = 64,
                 out_indices: Sequence[int] = (4, ),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_last_pool: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1., layer=['_BatchNorm', 'GroupNorm']),
                 ]) -> None:
        super().__init__(init_cfg)
        self._setup(depth, base_channels, out_indices, frozen_stages, norm_eval)
        with_norm = norm_cfg is not None

        channels = in_channels
        for i, num_convs in enumerate(self.stage_blocks):
            width = base_channels * self.width_multipliers[i]
            layers = []
            for _ in range(num_convs):
                layers.append(build_conv_layer(conv_cfg, channels, width, kernel_size=3,
                                               stride=1, padding=1, bias=not with_norm))
                if with_norm:
                    layers.append(build_norm_layer(norm_cfg, width)[1])
                layers.append(nn.ReLU(inplace=True))
                channels = width
            if with_last_pool or i < self.num_stages - 1:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            name = f'layer{i + 1}'
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
        #: Channels of the last stage's output (512 at the default width).
        self.out_channels = channels

        self._freeze_stages()

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Run the stages.

        Args:
            x (torch.Tensor): Images, ``(B, in_channels, H, W)``.

        Returns:
            tuple[torch.Tensor]: Outputs of the stages in ``out_indices``, in stage order; the
            last stage gives ``(B, 8 * base_channels, H / 32, W / 32)``.
        """
        return self._run_stages(x, self.stage_names)
