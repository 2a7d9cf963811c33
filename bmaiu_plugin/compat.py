"""Narrow fixes for the mmengine / mmcv / torch / numpy combination this plugin runs on.

All are applied once, when :mod:`bmaiu_plugin` is imported:

* :func:`patch_checkpoint_loader`: mmengine's checkpoints (``resume``, ``load_from``,
  ``init_cfg=dict(type='Pretrained')``) are read by the plugin's restricted loader
  (:mod:`bmaiu_plugin.utils.safe_load`), so no file, suspect encoder or resume file, runs code
  when it is loaded, and the config source a file carries is never evaluated.
* :func:`patch_dataset_pickles`: mmpretrain's CIFAR datasets read their batch files through the
  same restricted unpickler.
* :func:`patch_cpu_distributed`: mmengine's ``--launcher pytorch`` set-up calls
  ``torch.cuda.set_device``; on a CPU machine the gloo group is initialized without it.
* :func:`patch_adjust_hue`: ``mmcv.image.adjust_hue`` computes ``np.uint8(hue_factor * 255)``,
  which raises ``OverflowError`` under numpy 2 for negative factors (every ``ColorJitter`` with
  ``hue > 0``).  The replacement computes the same wrapped uint8 shift numpy 1 produced.
"""
import os.path as osp
import pickle

import numpy as np

_PATCHED = set()


def patch_checkpoint_loader() -> None:
    """Make every mmengine checkpoint load (resume, ``load_from``, ``Pretrained``) run nothing.

    * The local scheme reads with :func:`~bmaiu_plugin.utils.safe_load.load_run_checkpoint`:
      nothing the file names is called; numpy values and ``HistoryBuffer`` statistics are
      rebuilt from validated data.
    * Every scheme's result (local, http, ...) passes
      :func:`~bmaiu_plugin.utils.safe_load.sanitize_run_checkpoint`, which drops the config
      source the file carries: ``Runner.resume`` would evaluate ``meta['config']`` as Python.
    """
    if 'checkpoint' in _PATCHED:
        return
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    from .utils.safe_load import load_run_checkpoint, sanitize_run_checkpoint

    def __getstate__(self) -> dict:
        # stock mmengine pickles the class-level dict of statistics *functions* with every
        # buffer (as getattr(HistoryBuffer, 'min') ...); only the plain data is written
        state = dict(self.__dict__)
        state.pop('statistics_methods', None)
        return state

    HistoryBuffer.__getstate__ = __getstate__

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):  # noqa: D401 - mmengine signature
        """Load a local checkpoint as tensors and validated plain data only."""
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return load_run_checkpoint(filename, map_location=map_location)

    original = CheckpointLoader.load_checkpoint.__func__

    def load_checkpoint(cls, filename, map_location=None, logger='current'):
        return sanitize_run_checkpoint(original(cls, filename, map_location, logger),
                                       str(filename))

    CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)
    _PATCHED.add('checkpoint')


def patch_dataset_pickles() -> None:
    """Read mmpretrain's CIFAR-10/100 batch files with the restricted unpickler.

    ``mmpretrain.datasets.CIFAR10`` unpickles its batch files fully; with the plugin loaded, a
    crafted batch file is refused instead of run (the plugin's own ``BackdoorCIFAR10`` reads and
    validates them itself).
    """
    if 'datasets' in _PATCHED:
        return
    import types

    from mmpretrain.datasets import cifar

    from .utils.errors import DatasetFileError
    from .utils.safe_load import safe_pickle_loads

    def loads(data, encoding='ASCII', **_):
        return safe_pickle_loads(data, 'a CIFAR batch file', encoding=encoding,
                                 kind='CIFAR batch file', error_cls=DatasetFileError)

    cifar.pickle = types.SimpleNamespace(loads=loads, dumps=pickle.dumps)
    _PATCHED.add('datasets')


def _hue_shift(hue_factor: float) -> np.uint8:
    """The uint8 hue shift numpy 1 computed for ``np.uint8(hue_factor * 255)``."""
    return np.uint8(int(hue_factor * 255) % 256)


def patch_adjust_hue() -> None:
    """Replace ``mmcv.adjust_hue`` with a numpy-2-safe version of the same arithmetic."""
    if 'hue' in _PATCHED:
        return
    import cv2
    import mmcv
    import mmcv.image
    import mmcv.image.photometric as photometric
    from PIL import Image

    original = photometric.adjust_hue

    def adjust_hue(img: np.ndarray, hue_factor: float, backend=None) -> np.ndarray:
        if backend is None:
            backend = photometric.imread_backend
        if backend not in ['cv2', 'pillow']:
            raise ValueError(f'backend: {backend} is not supported.'
                             f"Supported backends are 'cv2', 'pillow'")
        if not (-0.5 <= hue_factor <= 0.5):
            raise ValueError(f'hue_factor:{hue_factor} is not in [-0.5, 0.5].')
        if not (isinstance(img, np.ndarray) and (img.ndim in {2, 3})):
            raise TypeError('img should be ndarray with dim=[2 or 3].')
        shift = _hue_shift(hue_factor)
        if backend == 'pillow':
            assert img.dtype == np.uint8, 'Pillow backend only support uint8 type'
            pil_image = Image.fromarray(img[..., ::-1], mode='RGB')
            h, s, v = pil_image.convert('HSV').split()
            np_h = np.array(h, dtype=np.uint8) + shift  # uint8 addition wraps
            pil_image = Image.merge('HSV', (Image.fromarray(np_h, 'L'), s, v)).convert('RGB')
            return np.array(pil_image, dtype=img.dtype)[..., ::-1]
        dtype = img.dtype
        hsv_img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
        h, s, v = cv2.split(hsv_img)
        h = h.astype(np.uint8) + shift  # uint8 addition wraps around the hue circle
        return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL).astype(dtype)

    adjust_hue.__doc__ = original.__doc__
    adjust_hue.__wrapped__ = original
    photometric.adjust_hue = adjust_hue
    mmcv.image.adjust_hue = adjust_hue
    mmcv.adjust_hue = adjust_hue
    _PATCHED.add('hue')


def patch_cpu_distributed() -> None:
    """Let ``--launcher pytorch`` start on machines without a GPU.

    mmengine's ``_init_dist_pytorch`` calls ``torch.cuda.set_device`` unconditionally; without
    CUDA the replacement initializes the (gloo) process group directly.
    """
    if 'dist' in _PATCHED:
        return
    import torch
    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils

    original = dist_utils._init_dist_pytorch

    def _init_dist_pytorch(backend='nccl', init_backend='torch', **kwargs) -> None:
        if torch.cuda.is_available():
            return original(backend, init_backend=init_backend, **kwargs)
        torch_dist.init_process_group(backend='gloo' if backend == 'nccl' else backend, **kwargs)

    dist_utils._init_dist_pytorch = _init_dist_pytorch
    _PATCHED.add('dist')


def apply_patches() -> None:
    """Apply every fix; safe to call repeatedly."""
    patch_checkpoint_loader()
    patch_dataset_pickles()
    patch_adjust_hue()
    patch_cpu_distributed()
