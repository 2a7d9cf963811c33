"""A data preprocessor that makes SSL views on the device.

The dataset pipeline only packs the raw uint8 image (``pipeline=[dict(type='PackInputs')]``);
the batch goes to the device as one uint8 tensor and this preprocessor produces the views with
the batched ops of :mod:`bmaiu_plugin.augment`, then normalizes them.  Its output has the
structure of mmpretrain's ``SelfSupDataPreprocessor`` (``{'inputs': [view, ...],
'data_samples': ...}``), so ``SimCLR``, ``BYOL``, ``MoCo`` (and any model reading
``inputs[i]``) train unchanged.
"""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor

from ..augment import ViewPipeline, build_view_pipeline, resolve_views
from ..registry import MODELS


@MODELS.register_module()
class DeviceMultiViewPreprocessor(SelfSupDataPreprocessor):
    """Multi-view SSL augmentation on the device, then normalization.

    The random stream of a training step is a ``torch.Generator`` on the batch's device seeded
    from ``(seed, iteration, rank)``: the iteration is the runner's (``MessageHub`` info
    ``'iter'``), so a resumed run replays the same views; outside a runner (or when the hub's
    iteration does not advance) a call counter takes its place.

    Args:
        transforms (str | list): A preset of :data:`bmaiu_plugin.augment.PRESETS`
            (``'cifar10_ssl'``, ``'simclr'``, ``'byol'``, ``'mocov2'``), one view pipeline (list
            of dicts named after mmpretrain's transforms, see :mod:`bmaiu_plugin.augment.pipeline`)
            or one pipeline per view group, as mmpretrain's ``MultiView``.
        num_views (int | list[int], optional): Views per pipeline (``MultiView`` semantics).
            Defaults to the preset's, or 2.
        mean (Sequence[float], optional): Normalization mean (0-255 scale, RGB after
            ``to_rgb``).
        std (Sequence[float], optional): Normalization std.
        to_rgb (bool): Reverse the channel order (BGR inputs) before augmenting; the ops assume
            RGB.
        seed (int, optional): Seed of the view stream; ``torch.initial_seed()`` at the first
            training call (the runner's ``randomness.seed``) by default.
        channels_last (bool): Return the views in ``torch.channels_last`` memory format
            (:class:`~bmaiu_plugin.engine.perf.ChannelsLastHook` switches it on).
        non_blocking (bool): Asynchronous host-to-device copy of the uint8 batch.
    """

    def __init__(self, transforms: Union[str, Sequence] = 'cifar10_ssl',
                 num_views: Union[int, Sequence[int], None] = None,
                 mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None,
                 to_rgb: bool = False, seed: Optional[int] = None, channels_last: bool = False,
                 non_blocking: bool = True, **kwargs):
        super().__init__(mean=mean, std=std, to_rgb=to_rgb, non_blocking=non_blocking, **kwargs)
        counts, pipelines = resolve_views(transforms, num_views)
        self.num_views: List[int] = counts
        self.pipelines: List[ViewPipeline] = [build_view_pipeline(p) for p in pipelines]
        self.seed = seed
        self.channels_last = bool(channels_last)
        self._calls = 0
        self._last_iter = None
        self._sub = 0

    # randomness -------------------------------------------------------------------------
    def _step_key(self):
        """``(iteration, sub-step)``: the runner's iteration while it advances."""
        it = MessageHub.get_current_instance().get_info('iter')
        self._calls += 1
        if it is None:
            return -1, self._calls
        if it == self._last_iter:
            self._sub += 1
        else:
            self._last_iter, self._sub = it, 0
        return int(it), self._sub

    def generator(self, device) -> torch.Generator:
        """The generator of the next training step (advances the step key)."""
        if self.seed is None:
            self.seed = int(torch.initial_seed()) % (2 ** 63)
        it, sub = self._step_key()
        g = torch.Generator(device=device)
        g.manual_seed(hash((int(self.seed), it, sub, get_rank())) % (2 ** 63))
        return g

    # views ------------------------------------------------------------------------------
    def make_views(self, imgs: torch.Tensor, generator: torch.Generator) -> List[torch.Tensor]:
        """Pixel-space float views ``[(B, C, H', W'), ...]`` of a uint8/float batch.

        All views of one pipeline are made in a single batched call.
        """
        x = imgs.float()
        views = []
        for n, pipeline in zip(self.num_views, self.pipelines):
            out = pipeline(x.repeat(n, 1, 1, 1) if n > 1 else x, generator)
            views.extend(out.chunk(n) if n > 1 else [out])
        return views

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self._enable_normalize:
            x = (x - self.mean) / self.std
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, data: dict, training: bool = False) -> dict:
        """Views (training) or the normalized images (otherwise).

        Args:
            data (dict): A ``default_collate`` batch: ``inputs`` a uint8 ``(B, C, H, W)`` tensor
                (or a list of already-made views, which are only normalized, as
                ``SelfSupDataPreprocessor`` does), ``data_samples``.
            training (bool): Make views.

        Returns:
            dict: ``inputs`` (list of float views when training, else a tensor) and
            ``data_samples``.
        """
        data = self.cast_data(data)
        inputs, samples = data['inputs'], data.get('data_samples')
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]
        if isinstance(inputs, (list, tuple)):  # views made by a CPU pipeline
            if self._channel_conversion:
                inputs = [v[:, [2, 1, 0]] for v in inputs]
            return {'inputs': [self._finish(v) for v in inputs], 'data_samples': samples}
        if self._channel_conversion:
            inputs = inputs[:, [2, 1, 0]]
        if not training:
            return {'inputs': self._finish(inputs), 'data_samples': samples}
        # augment in float32 even inside an autocast region (the optim wrapper's bf16 context)
        with torch.autocast(inputs.device.type, enabled=False):
            views = self.make_views(inputs, self.generator(inputs.device))
            return {'inputs': [self._finish(v) for v in views], 'data_samples': samples}
