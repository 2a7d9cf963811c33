"""The attacker's side: encoder fine-tuning attacks and poisoned pretraining data.

Never imported by :mod:`bmaiu_plugin.defenses` (``tests/test_layout.py`` checks it).
"""
from .badencoder import (BadEncoder, badencoder_loss, effectiveness_loss, reference_loss,
                         utility_loss)
from .drupe import DRUPE, drupe_terms, sliced_wasserstein
from .poison import PoisonedDataset, PoisonRecordHook

__all__ = ['BadEncoder', 'DRUPE', 'PoisonedDataset', 'PoisonRecordHook', 'badencoder_loss',
           'drupe_terms', 'effectiveness_loss', 'reference_loss', 'sliced_wasserstein',
           'utility_loss']
