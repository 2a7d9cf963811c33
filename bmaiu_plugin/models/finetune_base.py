"""Shared machinery of the encoder fine-tuning algorithms (BadEncoder, ESTAS, BMAIU).

Each of them trains a copy of an encoder against frozen copies of itself, on pixel-space images
that get triggers stamped on the device before normalization.  This base holds:

* the trainable ``backbone`` and any number of frozen copies (``eval()``, no grad);
* loading the starting encoder from ``encoder_checkpoint`` as tensors only, in ``init_weights``
  (so the runner's ``resume`` / ``load_from`` still override it);
* BatchNorm freezing (running stats *and* affine parameters, as BadEncoder's code does);
* the pixel normalizer and unit-normalized pooled features;
* a per-step random generator derived from ``(seed, step, rank)``, so random trigger positions
  replay identically after ``--resume``.
"""
import copy
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import get_rank
from mmengine.logging import MMLogger
from mmengine.model import BaseModel

from ..registry import MODELS
from ..utils.checkpoint import load_encoder_weights
from ..utils.data import encode_batched
from .features import CIFAR10_MEAN, CIFAR10_STD, PixelNormalizer, pool_features

def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy in eval mode with ``requires_grad=False``."""
    out = copy.deepcopy(module)
    out.eval()  # (mmpretrain backbones' train() returns None: do not chain)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of ``(B, D)`` features."""
    return F.cosine_similarity(a, b, dim=-1)


class EncoderFinetuneBase(BaseModel):
    """Base class of encoder fine-tuning attacks and defenses.

    Args:
        backbone (dict): The encoder config (e.g. ``dict(type='ResNet_CIFAR', depth=18)``).
        encoder_checkpoint (str, optional): Weights of the starting encoder; any form
            :func:`~bmaiu_plugin.utils.checkpoint.load_encoder_weights` accepts.
        frozen_copies (Sequence[str]): Names of frozen copies of the encoder to keep.
        freeze_bn (bool): Keep BN running stats fixed and BN affine parameters untrained.
        mean (Sequence[float]): Normalization mean on the 0-255 scale.
        std (Sequence[float]): Normalization std on the 0-255 scale.
        seed (int): Seed of the per-step random generator.
        data_preprocessor (dict, optional): Defaults to ``BaseDataPreprocessor`` (moves uint8
            images to the device unchanged; normalization happens after the triggers).
        init_cfg (dict, optional): mmengine init config.
    """

    def __init__(self, backbone: dict, encoder_checkpoint: Optional[str] = None,
                 frozen_copies: Sequence[str] = ('teacher',), freeze_bn: bool = True,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD,
                 seed: int = 0, data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor or dict(type='BaseDataPreprocessor'),
                         init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.frozen_names = tuple(frozen_copies)
        for name in self.frozen_names:
            self.add_module(name, frozen_copy(self.backbone))
        self.encoder_checkpoint = encoder_checkpoint
        self.freeze_bn = freeze_bn
        self.normalizer = PixelNormalizer(mean, std)
        self.seed = int(seed)
        self.register_buffer('step', torch.zeros((), dtype=torch.long))
        if freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    for p in m.parameters():
                        p.requires_grad_(False)

    # weights ---------------------------------------------------------------------------
    def init_weights(self):
        """Load ``encoder_checkpoint`` into the backbone and every frozen copy."""
        super().init_weights()
        if not self.encoder_checkpoint:
            MMLogger.get_current_instance().warning(
                f'{type(self).__name__}: no encoder_checkpoint; starting from a random encoder '
                '(expected only when resuming)')
            return
        load_encoder_weights(self.backbone, self.encoder_checkpoint)
        self.sync_frozen(self.frozen_names)
        MMLogger.get_current_instance().info(
            f'{type(self).__name__}: encoder loaded (tensors only) from {self.encoder_checkpoint}')

    @torch.no_grad()
    def sync_frozen(self, names: Sequence[str]) -> None:
        """Copy the backbone's current weights into the named frozen copies."""
        state = self.backbone.state_dict()
        for name in names:
            getattr(self, name).load_state_dict(state)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.frozen_names:
            getattr(self, name).eval()
        if mode and self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # features --------------------------------------------------------------------------
    def features(self, encoder: nn.Module, imgs: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of pixel-space images ``(B, D)`` (not unit-normalized)."""
        return pool_features(encoder(self.normalizer(imgs)))

    @torch.no_grad()
    def encode_batched(self, encoder: nn.Module, imgs: torch.Tensor,
                       batch_size: int = 512) -> torch.Tensor:
        """Features of many pixel-space images, in batches, returned on the CPU."""
        return encode_batched(encoder, self.normalizer, imgs, batch_size, device=self.step.device)

    def step_generator(self, device) -> torch.Generator:
        """A generator seeded by (seed, step, rank): identical streams after a resume."""
        g = torch.Generator(device=device)
        g.manual_seed((self.seed * 1_000_003 + int(self.step) * 97 + get_rank()) % (2 ** 63))
        return g

    @staticmethod
    def images(inputs) -> torch.Tensor:
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0] if len(inputs) == 1 and inputs[0].dim() == 4 else \
                torch.stack(list(inputs))
        return inputs

    # mmengine API -----------------------------------------------------------------------
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        imgs = self.images(inputs)
        if mode == 'loss':
            losses = self.loss(imgs, data_samples)
            self.step += 1
            return losses
        if mode == 'tensor':
            return self.features(self.backbone, imgs)
        raise RuntimeError(f'{type(self).__name__} has no {mode!r} mode; evaluate it with the '
                           'BackdoorProbeLoop (val_cfg / test_cfg)')

    def loss(self, imgs: torch.Tensor, data_samples) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def probe_encoders(self) -> Dict[str, dict]:
        """Encoders the probe loop evaluates: the fine-tuned one by default."""
        return {'encoder': dict(encoder=self.backbone)}


def sample_rows(pool: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` rows drawn uniformly with replacement from ``pool``."""
    idx = torch.randint(0, pool.shape[0], (n,), generator=generator, device=generator.device)
    return pool[idx.to(pool.device)]


def as_list(x) -> List:
    return list(x) if isinstance(x, (list, tuple)) else [x]


@MODELS.register_module()
class ProbedEncoder(EncoderFinetuneBase):
    """An encoder under test, nothing else: for probing any checkpoint with ``mim test``.

    ``encoder_checkpoint`` is loaded as tensors only (mmengine checkpoint of an SSL model, plain
    state dict or safetensors); the probe loop then evaluates ``backbone``.
    """

    def __init__(self, backbone: dict, **kwargs):
        kwargs.setdefault('frozen_copies', ())
        super().__init__(backbone, **kwargs)

    def loss(self, imgs, data_samples=None):
        raise RuntimeError('ProbedEncoder is for evaluation only (mim test)')
