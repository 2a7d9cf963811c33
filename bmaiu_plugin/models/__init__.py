"""Models: encoder fine-tuning attacks and defenses, and CIFAR backbones."""
from .badencoder import BadEncoder
from .bmaiu import BMAIU
from .finetune_base import EncoderFinetuneBase, ProbedEncoder

__all__ = ["BadEncoder", "BMAIU", "EncoderFinetuneBase", "ProbedEncoder"]
from .backbones import *  # noqa: F401,F403
