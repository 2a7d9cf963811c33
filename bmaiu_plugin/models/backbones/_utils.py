"""Helpers shared by the CIFAR backbones."""
from typing import Sequence, Tuple, Union

import torch
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm
from mmpretrain.models.backbones.base_backbone import BaseBackbone


def normalize_out_indices(indices: Union[int, Sequence[int]],
                          num_stages: int) -> Tuple[int, ...]:
    """Map stage indices (negative ones count from the end) into ``[0, num_stages)``.

    Args:
        indices (int | Sequence[int]): Requested output stages.
        num_stages (int): Number of stages of the backbone.

    Returns:
        tuple[int]: The non-negative indices, in the given order.

    Raises:
        ValueError: If an index is out of range.
    """
    if isinstance(indices, int):
        indices = (indices, )
    out = []
    for i in indices:
        j = i + num_stages if i < 0 else i
        if not 0 <= j < num_stages:
            raise ValueError(f'out index {i} is out of range for {num_stages} stages')
        out.append(j)
    return tuple(out)


class StagedBackbone(BaseBackbone):
    """A backbone run as named stages, with mmpretrain's ``out_indices`` / ``frozen_stages`` /
    ``norm_eval`` behaviour.

    Subclasses call :meth:`_setup` first, add their stem and stages (``self.stage_names``, in
    order) and list the stem's modules in ``stem_modules()``; ``frozen_stages >= 0`` freezes the
    stem, ``k`` also the first ``k`` stages.
    """

    arch_settings: dict = {}

    def _setup(self, depth: int, base_channels: int, out_indices: Sequence[int],
               frozen_stages: int, norm_eval: bool) -> None:
        """Validate and store the architecture arguments common to the CIFAR backbones."""
        name = type(self).__name__
        if depth not in self.arch_settings:
            raise KeyError(f'invalid depth {depth} for {name} '
                           f'(choose from {sorted(self.arch_settings)})')
        if base_channels < 1:
            raise ValueError(f'base_channels must be positive, got {base_channels}')
        self.depth = depth
        self.stage_blocks = self.arch_settings[depth]
        self.num_stages = len(self.stage_blocks)
        self.base_channels = base_channels
        self.out_indices = normalize_out_indices(out_indices, self.num_stages)
        if frozen_stages > self.num_stages:
            raise ValueError(f'frozen_stages={frozen_stages} > {self.num_stages} stages')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.stage_names = []

    def stem_modules(self) -> Tuple[torch.nn.Module, ...]:
        """The modules before the first stage (frozen when ``frozen_stages >= 0``)."""
        return ()

    def _freeze_stages(self) -> None:
        """Freeze the stem (``frozen_stages >= 0``) and the first ``frozen_stages`` stages."""
        frozen = list(self.stem_modules()) if self.frozen_stages >= 0 else []
        frozen += [getattr(self, n) for n in self.stage_names[:max(self.frozen_stages, 0)]]
        for m in frozen:
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def _run_stages(self, x: torch.Tensor, names: Sequence[str]) -> Tuple[torch.Tensor, ...]:
        """Run the stages ``names`` in order; return the outputs of those in ``out_indices``."""
        outs = []
        for i, name in enumerate(names):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def train(self, mode: bool = True) -> 'StagedBackbone':
        """Set train/eval mode, keeping frozen stages (and all norms if ``norm_eval``) in eval.

        Args:
            mode (bool): Training mode. Defaults to True.

        Returns:
            StagedBackbone: ``self``.
        """
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
