"""bmaiu_plugin: backdoor attacks and defenses for self-supervised encoders, in MMPretrain.

Importing the package applies the stack fixes in :mod:`bmaiu_plugin.compat` and registers every
component into mmpretrain's registry nodes (see :mod:`bmaiu_plugin.registry`).
"""
from .version import __version__
from .compat import apply_patches

apply_patches()

from . import datasets, defenses, engine, evaluation, models, triggers  # noqa: E402,F401

__all__ = ['__version__', 'apply_patches']
