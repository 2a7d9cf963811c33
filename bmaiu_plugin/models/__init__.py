"""Models: encoder fine-tuning attacks and defenses, and CIFAR backbones."""
from .badencoder import BadEncoder
from .bmaiu import BMAIU
from .finetune_base import EncoderFinetuneBase, ProbedEncoder
from .baselines import CLPDefense, DecreeDetector, IBAUDefense

__all__ = ["BadEncoder", "BMAIU", "EncoderFinetuneBase", "ProbedEncoder"]
__all__ += ["CLPDefense", "DecreeDetector", "IBAUDefense"]
from .sslcleanse import SSLCleanse  # noqa: E402
__all__ += ["SSLCleanse"]
from .backbones import *  # noqa: F401,F403
from . import data_preprocessor, perf  # noqa: E402,F401  (device SSL views, speed switches)
