"""Linear probe on cached encoder features, the backdoor metrics BA / ASR / PA, and an encoder
with a linear head as a classifier.

Definitions (percent):

* **BA**: accuracy of the probe on the clean test set.
* **ASR**: share of triggered *non-target-class* test images the probe assigns to the target.
* **ASR_all**: the same over all test images (BadEncoder's / CTRL's convention).
* **PA**: accuracy on the triggered non-target images against their true labels.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.features import pool_features
from ..utils.data import eval_mode
from ..utils.device import module_device
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number

#: The linear probe's settings (:func:`train_linear_probe` arguments) a config may give.
PROBE_KEYS = ('epochs', 'batch_size', 'lr', 'momentum', 'weight_decay', 'seed')


def check_probe_cfg(cfg: dict, name: str = 'probe', sep: str = ' ') -> None:
    """Check linear-probe settings (any of :data:`PROBE_KEYS`) before features are extracted.

    Args:
        cfg (dict): The settings.
        name (str): Whose they are, for the message (``'I-BAU head'``, a config path).
        sep (str): Between ``name`` and a key (``'.'`` after a config path).
    """
    for key, low, high, inc, integer in (('epochs', 1, None, True, True),
                                         ('batch_size', 1, None, True, True),
                                         ('lr', 0, None, (False, True), False),
                                         ('momentum', 0, 1, True, False),
                                         ('weight_decay', 0, None, True, False)):
        if key in cfg:
            check_number(f'{name}{sep}{key}', cfg[key], low, high, inclusive=inc,
                         integer=integer)


def train_linear_probe(feats: torch.Tensor, labels: torch.Tensor, num_classes: int,
                       epochs: int = 10, batch_size: int = 64, lr: float = 0.1,
                       momentum: float = 0.9, weight_decay: float = 0., seed: int = 0,
                       bias: bool = True) -> nn.Linear:
    """Train ``nn.Linear(D, num_classes)`` with SGD + cross-entropy on cached features.

    Args:
        feats (Tensor): ``(N, D)`` features (already normalized as wanted).
        labels (Tensor): ``(N,)`` class indices.
        num_classes (int): Output classes.
        epochs, batch_size, lr, momentum, weight_decay: SGD settings; the paper's probe is
            10 epochs, batch 64, lr 0.1 (momentum is not stated; 0.9 here).
        seed (int): Seed of the head's init and of the batch order.
        bias (bool): Give the head a bias (``False``: a head that commutes with feature
            scaling, as the BackdoorBench export needs).

    Returns:
        nn.Linear: The trained head (on ``feats``' device).
    """
    check_probe_cfg(dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                         weight_decay=weight_decay))
    g = torch.Generator().manual_seed(int(seed))
    head = nn.Linear(feats.shape[1], num_classes, bias=bias).to(feats.device)
    with torch.no_grad():
        bound = 1. / feats.shape[1] ** 0.5
        head.weight.copy_(torch.rand(head.weight.shape, generator=g) * 2 * bound - bound)
        if bias:
            head.bias.zero_()
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=max(1, epochs * ((len(feats) + batch_size - 1) // batch_size)))
    n = len(feats)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g).to(feats.device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(head(feats[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


def normalize_features(feats: torch.Tensor, mode: Optional[str],
                       stats: Optional[Dict[str, torch.Tensor]] = None):
    """``'l2'``, ``'standardize'`` (train mean/std, after l2, as SSL-Backdoor) or ``None``."""
    if mode is None:
        return feats, stats
    x = F.normalize(feats, dim=1)
    if mode == 'l2':
        return x, stats
    if mode == 'standardize':
        if stats is None:
            stats = dict(mean=x.mean(0), std=x.std(0).clamp_min(1e-6))
        return (x - stats['mean']) / stats['std'], stats
    raise ValueError(f'unknown feature normalization {mode!r}')


def percent(mask: torch.Tensor) -> float:
    """Share of true entries of a bool tensor, in percent (NaN when empty)."""
    return 100. * mask.float().mean().item() if mask.numel() else float('nan')


def attack_rates(pred: torch.Tensor, labels: torch.Tensor,
                 target: Union[int, torch.Tensor]) -> Dict[str, float]:
    """ASR (non-target images), ASR_all and PA of predictions on triggered images, in percent.

    Args:
        pred (Tensor): ``(N,)`` predicted classes of the triggered images.
        labels (Tensor): ``(N,)`` their true classes.
        target (int | Tensor): The target class, or one per image ``(N,)``.
    """
    target = torch.as_tensor(target, device=pred.device).expand_as(pred)
    nt = labels != target
    return dict(ASR=percent(pred[nt] == target[nt]), ASR_all=percent(pred == target),
                PA=percent(pred[nt] == labels[nt]))


@torch.no_grad()
def backdoor_metrics(head: nn.Module, clean_feats: torch.Tensor, clean_labels: torch.Tensor,
                     trig_feats: torch.Tensor, trig_labels: torch.Tensor, target: int
                     ) -> Dict[str, float]:
    """BA, ASR (non-target), ASR_all and PA, in percent.

    Args:
        head (nn.Module): The probe.
        clean_feats, clean_labels: The clean test set.
        trig_feats, trig_labels: The same images with the trigger, with their true labels.
        target (int): The attack's target class.
    """
    return dict(BA=percent(head(clean_feats).argmax(1) == clean_labels),
                **attack_rates(head(trig_feats).argmax(1), trig_labels, target))


class EncoderClassifier(nn.Module):
    """``head(pool_features(encoder(normalizer(x))))``: an encoder with a linear head.

    Args:
        encoder (nn.Module): The backbone; its output (tensor or tuple of stages) is pooled.
        head (nn.Module): The classifier on the ``(B, D)`` features (e.g. ``nn.Linear``).
        feature_norm (str, optional): ``'l2'`` to L2-normalize the features before the head
            (for a head fit that way), or ``None``.
        normalizer (nn.Module, optional): Pixel space to the encoder's input; ``None``: the
            input is already the encoder's (normalized) input.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, feature_norm: Optional[str] = None,
                 normalizer: Optional[nn.Module] = None):
        super().__init__()
        if feature_norm not in (None, 'l2'):
            raise ConfigValueError(f"feature_norm must be None or 'l2', got {feature_norm!r}")
        self.encoder = encoder
        self.head = head
        self.feature_norm = feature_norm
        self.normalizer = normalizer

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` pooled features (L2-normalized with ``feature_norm='l2'``)."""
        if self.normalizer is not None:
            x = self.normalizer(x)
        feats = pool_features(self.encoder(x))
        return F.normalize(feats, dim=1) if self.feature_norm == 'l2' else feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def logits(self, imgs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Logits of many images, in eval mode and batches, returned on the CPU."""
        if len(imgs) == 0:
            return torch.zeros(0, self.head.out_features)
        dev = module_device(self)
        with eval_mode(self):
            return torch.cat([self(imgs[i:i + batch_size].to(dev)).cpu()
                              for i in range(0, len(imgs), batch_size)])

    def predict(self, imgs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted classes ``(N,)`` (CPU, long)."""
        return self.logits(imgs, batch_size).argmax(1)


class L2Normalize(nn.Module):
    """``F.normalize(x, dim=1)``: put in front of a head fit on L2-normalized features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


@torch.no_grad()
def classifier_metrics(encoder: nn.Module, head: nn.Module, images: torch.Tensor,
                       labels: torch.Tensor, triggers: Sequence[dict], normalizer: nn.Module,
                       batch_size: int = 256, seed: int = 0) -> Dict[str, float]:
    """BA, and ASR / ASR_all / PA per trigger, of the classifier ``head . encoder`` as it is.

    Args:
        encoder (nn.Module): The encoder (evaluated in eval mode; its mode is restored).
        head (nn.Module): Pooled ``(B, D)`` features -> logits.
        images (Tensor): ``(N, 3, H, W)`` clean pixel-space test images.
        labels (Tensor): ``(N,)`` their classes.
        triggers (Sequence[dict]): ``dict(name, trigger, target)``; triggers with ``target < 0``
            (``'auto'``: a model's reference class) are skipped.
        normalizer (nn.Module): Pixel space to the encoder's input.
        batch_size (int): Images per forward pass.
        seed (int): Seed of the trigger positions' generator (on the encoder's device).

    Returns:
        dict: ``BA``, ``<trigger>/ASR``, ``<trigger>/ASR_all``, ``<trigger>/PA``,
        ``<trigger>/target``: the probe metric's form.
    """
    dev = module_device(encoder)
    clf = EncoderClassifier(encoder, head, normalizer=normalizer.to(dev))
    gen = torch.Generator(device=dev).manual_seed(seed)
    clean = clf.logits(images, batch_size)
    out = dict(BA=percent(clean.argmax(1) == labels))
    for t in triggers:
        if t['target'] < 0:
            continue
        trig = t['trigger'].to(dev)
        stamped = trig.stamp_batched(images, gen, batch_size, device=dev, to_cpu=True)
        m = attack_rates(clf.logits(stamped, batch_size).argmax(1), labels, t['target'])
        out.update({f"{t['name']}/{k}": m[k] for k in ('ASR', 'ASR_all', 'PA')})
        out[f"{t['name']}/target"] = t['target']
    return out
