"""The registered linear-probe backdoor metric."""
from collections import defaultdict
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric

from ..registry import METRICS
from ..utils.errors import ConfigValueError
from ..utils.validate import check_number, clip
from .probe import (backdoor_metrics, check_probe_cfg, normalize_features, percent,
                    train_linear_probe)

#: Name of the result set holding the probe's labeled training features.
PROBE_TRAIN = 'probe_train'
#: Name of the clean test set.
CLEAN = 'clean'
#: Name of the set holding reference images (their predicted class is an ``'auto'`` target).
REFERENCE = 'reference'


@METRICS.register_module()
class BackdoorProbeMetric(BaseMetric):
    """Fit a linear probe on cached features and report BA / ASR / PA per trigger.

    :class:`~bmaiu_plugin.evaluation.loop.BackdoorProbeLoop` feeds it one dict per image:
    ``{'feat': Tensor(D), 'label': int, 'set': str, 'idx': int, 'target': int}`` where ``set`` is
    ``'probe_train'``, ``'clean'``, ``'reference'`` or a trigger's name.  Results are gathered
    across ranks by :class:`~mmengine.evaluator.BaseMetric` (duplicates from padded samplers are
    dropped by ``(set, idx)``), the probe is trained once on the gathered features, and the metrics
    are broadcast to every rank.

    Args:
        epochs (int): Probe epochs. Paper: 10.
        batch_size (int): Probe batch. Paper: 64.
        lr (float): Probe SGD learning rate (cosine-annealed). Paper: 0.1.
        momentum (float): SGD momentum.
        weight_decay (float): SGD weight decay.
        feature_norm (str, optional): ``'l2'`` (default), ``'standardize'`` or ``None``.
        num_classes (int, optional): Classes; defaults to ``max(label) + 1``.
        seed (int): Probe seed.
        collect_device (str): ``'cpu'`` or ``'gpu'``, as in mmengine.
    """

    default_prefix: Optional[str] = None

    def __init__(self, epochs: int = 10, batch_size: int = 64, lr: float = 0.1,
                 momentum: float = 0.9, weight_decay: float = 0.,
                 feature_norm: Optional[str] = 'l2', num_classes: Optional[int] = None,
                 seed: int = 0, collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.probe_cfg = dict(epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                              weight_decay=weight_decay, seed=seed)
        check_probe_cfg(self.probe_cfg, 'BackdoorProbeMetric')
        if feature_norm not in ('l2', 'standardize', None):
            raise ConfigValueError("BackdoorProbeMetric feature_norm must be 'l2', 'standardize' "
                                   f'or None, got {clip(feature_norm)}')
        check_number('BackdoorProbeMetric num_classes', num_classes, 2, integer=True,
                     optional=True)
        self.feature_norm = feature_norm
        self.num_classes = num_classes
        self.last_head = None

    @staticmethod
    def check_cfg(cfg: dict, config, path: str) -> None:
        """Pre-flight (:func:`~bmaiu_plugin.utils.validate.check_config`): the probe settings."""
        check_probe_cfg(cfg, path, sep='.')

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        self.results.extend(data_samples)

    @staticmethod
    def _group(results: List[dict]) -> Dict[str, dict]:
        sets = defaultdict(dict)
        for r in results:
            sets[r['set']][r['idx']] = r  # dedupe padded duplicates
        out = {}
        for name, items in sets.items():
            items = [items[k] for k in sorted(items)]
            out[name] = dict(feat=torch.stack([torch.as_tensor(r['feat']) for r in items]).float(),
                             label=torch.tensor([int(r['label']) for r in items]),
                             target=int(items[0].get('target', -1)))
        return out

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        sets = self._group(results)
        if PROBE_TRAIN not in sets or CLEAN not in sets:
            raise RuntimeError('BackdoorProbeMetric needs probe_train and clean features')
        tr = sets.pop(PROBE_TRAIN)
        n_cls = self.num_classes or int(max(tr['label'].max(), sets[CLEAN]['label'].max())) + 1
        x_tr, stats = normalize_features(tr['feat'], self.feature_norm)
        head = train_linear_probe(x_tr, tr['label'], n_cls, **self.probe_cfg)
        self.last_head = head
        norm = lambda f: normalize_features(f, self.feature_norm, stats)[0]  # noqa: E731
        clean = sets.pop(CLEAN)
        x_clean = norm(clean['feat'])
        with torch.no_grad():
            ba = percent(head(x_clean).argmax(1) == clean['label'])
        metrics = {'BA': ba}
        ref = sets.pop(REFERENCE, None)
        ref_target = None
        if ref is not None:
            with torch.no_grad():
                ref_target = int(head(norm(ref['feat'])).argmax(1).mode().values)
            metrics['reference_class'] = ref_target
        for name, s in sets.items():
            target = s['target'] if s['target'] >= 0 else ref_target
            if target is None:
                raise RuntimeError(f"trigger '{name}' has target 'auto' but no reference images")
            m = backdoor_metrics(head, x_clean, clean['label'], norm(s['feat']), s['label'],
                                 target)
            for k in ('ASR', 'ASR_all', 'PA'):
                metrics[f'{name}/{k}'] = m[k]
            metrics[f'{name}/target'] = target
        return metrics
