"""The evaluator: linear probe (BA / ASR / PA), its loop, attack presets, diagnostics, audit."""
from .audit import audit_encoder, check_audit_cfg
from .diagnostics import (check_pl1_cfg, implant_diagnostics, pl1_report, shadow_images,
                          trigger_shift)
from .loop import BackdoorProbeLoop
from .metric import BackdoorProbeMetric
from .probe import (EncoderClassifier, attack_rates, backdoor_metrics, classifier_metrics,
                    normalize_features, train_linear_probe)

__all__ = ['BackdoorProbeLoop', 'BackdoorProbeMetric', 'EncoderClassifier', 'attack_rates',
           'backdoor_metrics', 'classifier_metrics', 'normalize_features', 'train_linear_probe',
           'check_pl1_cfg', 'implant_diagnostics', 'pl1_report', 'shadow_images',
           'trigger_shift', 'audit_encoder', 'check_audit_cfg']
