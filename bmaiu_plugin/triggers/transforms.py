"""Triggers as data-pipeline transforms (for pipelines that stamp per sample on the CPU)."""
from typing import Optional

import torch
from mmcv.transforms import BaseTransform

from ..registry import TRANSFORMS
from .base import build_trigger


@TRANSFORMS.register_module()
class ApplyTrigger(BaseTransform):
    """Stamp a trigger on ``results['img']`` (HWC uint8, before normalization).

    The batched path (a trigger called on a device tensor) is the fast one; this transform exists
    so a trigger can sit anywhere in an mmpretrain pipeline, e.g. after ``RandomResizedCrop`` to
    paste after augmentation.

    Args:
        trigger (dict): A trigger config, e.g. ``dict(type='PatchTrigger', size=4)``.
        prob (float): Probability of stamping a given sample. Defaults to 1.
        seed (int, optional): Seed of this transform's generator (random positions, ``prob``).
    """

    def __init__(self, trigger: dict, prob: float = 1., seed: Optional[int] = None):
        self.trigger = build_trigger(trigger)
        self.prob = float(prob)
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(int(seed))
        else:
            self.generator.seed()

    def transform(self, results: dict) -> dict:
        if self.prob < 1. and torch.rand(1, generator=self.generator).item() >= self.prob:
            return results
        results['img'] = self.trigger.apply_numpy(results['img'], self.generator)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(trigger={self.trigger!r}, prob={self.prob})'
