"""bmaiu_plugin: backdoor attacks and defenses for self-supervised encoders, in MMPretrain.

Importing the package applies the stack fixes in :mod:`bmaiu_plugin.compat` and registers every
component into mmpretrain's registry nodes (see :mod:`bmaiu_plugin.registry`).
"""
import warnings

# mmcv-lite (the declared dependency) has no compiled ops; its import-time warning about one
# would be the first line of every run's output, before the plugin's own messages
warnings.filterwarnings('ignore', message='Fail to import ``MultiScaleDeformableAttention``')

from .version import __version__  # noqa: E402
from .compat import apply_patches  # noqa: E402

apply_patches()

from . import attacks, datasets, defenses, engine, evaluation, models, triggers  # noqa: E402,F401

__all__ = ['__version__', 'apply_patches']
