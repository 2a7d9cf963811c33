"""Linear probe on cached encoder features, and the backdoor metrics BA / ASR / PA.

Definitions (percent):

* **BA**: accuracy of the probe on the clean test set.
* **ASR**: share of triggered *non-target-class* test images the probe assigns to the target.
* **ASR_all**: the same over all test images (BadEncoder's / CTRL's convention).
* **PA**: accuracy on the triggered non-target images against their true labels.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..utils.validate import check_number


def pool_features(out) -> torch.Tensor:
    """Turn a backbone output (tensor or tuple of stage outputs) into ``(B, D)`` features."""
    if isinstance(out, (tuple, list)):
        out = out[-1]
    if out.dim() == 4:
        out = F.adaptive_avg_pool2d(out, 1)
    return out.flatten(1)


class PixelNormalizer(nn.Module):
    """Pixel-space ``[0, 255]`` images to the encoder's normalized input.

    Args:
        mean (Sequence[float]): Per-channel mean on the 0-255 scale.
        std (Sequence[float]): Per-channel std on the 0-255 scale.
        bgr_to_rgb (bool): Reverse the channel order first.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], bgr_to_rgb: bool = False):
        super().__init__()
        self.register_buffer('mean', torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer('std', torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, imgs: torch.Tensor) -> torch.Tensor:
        x = imgs.float()
        if self.bgr_to_rgb:
            x = x.flip(1)
        return (x - self.mean) / self.std


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
    pred_clean = head(clean_feats).argmax(1)
    pred_trig = head(trig_feats).argmax(1)
    nt = trig_labels != target
    pct = lambda m: 100. * m.float().mean().item() if m.numel() else float('nan')  # noqa: E731
    return dict(BA=pct(pred_clean == clean_labels),
                ASR=pct(pred_trig[nt] == target),
                ASR_all=pct(pred_trig == target),
                PA=pct(pred_trig[nt] == trig_labels[nt]))
