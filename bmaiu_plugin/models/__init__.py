"""Generic networks: CIFAR backbones, the encoder fine-tuning base, on-device preprocessors."""
from .backbones import *  # noqa: F401,F403
from .data_preprocessor import DeviceMultiViewPreprocessor
from .features import CIFAR10_MEAN, CIFAR10_STD, PixelNormalizer, pool_features
from .finetune_base import EncoderFinetuneBase, ProbedEncoder

__all__ = ['DeviceMultiViewPreprocessor', 'EncoderFinetuneBase', 'ProbedEncoder',
           'PixelNormalizer', 'pool_features', 'CIFAR10_MEAN', 'CIFAR10_STD']
