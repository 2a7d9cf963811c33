"""Linear-probe backdoor evaluation (BA / ASR / PA)."""
from .metric import BackdoorProbeMetric
from .probe import (PixelNormalizer, backdoor_metrics, normalize_features, pool_features,
                    train_linear_probe)

__all__ = ['BackdoorProbeMetric', 'PixelNormalizer', 'backdoor_metrics', 'normalize_features',
           'pool_features', 'train_linear_probe']
