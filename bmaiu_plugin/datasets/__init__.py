"""Datasets: offline CIFAR-10, seeded ratio subsets, poisoned-data wrappers."""
from .cifar import BackdoorCIFAR10, default_data_root
from .subset import RatioSubset
from .poison import PoisonedDataset

__all__ = ['BackdoorCIFAR10', 'RatioSubset', 'default_data_root', 'PoisonedDataset']
