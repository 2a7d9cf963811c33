"""Datasets: offline CIFAR-10, seeded ratio subsets, reference-image selection."""
from .cifar import BackdoorCIFAR10, default_data_root
from .reference import dataset_arrays, select_reference
from .subset import RatioSubset

__all__ = ['BackdoorCIFAR10', 'RatioSubset', 'default_data_root', 'dataset_arrays',
           'select_reference']
