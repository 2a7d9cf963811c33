"""Stack fixes applied on import: mmcv.adjust_hue under numpy 2, mmengine's checkpoint loader."""
import os
from collections import OrderedDict

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import bmaiu_plugin
import mmcv
import mmcv.image
import mmcv.image.photometric as photometric
from bmaiu_plugin.compat import _hue_shift, apply_patches
from bmaiu_plugin.utils.errors import UnsafeCheckpointError


@pytest.fixture(scope='module')
def img():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8)


def _ref_hue_cv2(img, shift):
    """mmcv's cv2 branch with an explicit uint8 shift."""
    hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
    h, s, v = cv2.split(hsv)
    with np.errstate(over='ignore'):
        h = h.astype(np.uint8) + np.uint8(shift)
    return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL).astype(img.dtype)


def _ref_hue_pillow(img, shift):
    """mmcv's pillow branch with an explicit uint8 shift."""
    pil = Image.fromarray(np.ascontiguousarray(img[..., ::-1]))
    h, s, v = pil.convert('HSV').split()
    with np.errstate(over='ignore'):
        np_h = np.array(h, dtype=np.uint8) + np.uint8(shift)
    out = Image.merge('HSV', (Image.fromarray(np_h, 'L'), s, v)).convert('RGB')
    return np.array(out, dtype=img.dtype)[..., ::-1]


REF = {'cv2': _ref_hue_cv2, 'pillow': _ref_hue_pillow}


def test_patch_is_installed_everywhere():
    assert mmcv.adjust_hue is photometric.adjust_hue is mmcv.image.adjust_hue
    assert hasattr(mmcv.adjust_hue, '__wrapped__')
    apply_patches()  # idempotent
    assert mmcv.adjust_hue is photometric.adjust_hue
    assert not hasattr(mmcv.adjust_hue.__wrapped__, '__wrapped__')


def test_original_overflows_under_numpy2(img):
    """Documents why the patch exists: numpy 2 refuses np.uint8(-76.5)."""
    if int(np.__version__.split('.')[0]) < 2:
        pytest.skip('numpy 1 wraps silently')
    with pytest.raises(OverflowError):
        mmcv.adjust_hue.__wrapped__(img, -0.3, backend='cv2')


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
@pytest.mark.parametrize('factor', [-0.3, -0.5, -0.01, -0.2])
def test_negative_hue_no_overflow_and_exact(img, backend, factor):
    out = mmcv.adjust_hue(img, factor, backend=backend)
    shift = np.uint8(int(factor * 255) % 256)
    assert _hue_shift(factor) == shift
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out, REF[backend](img, shift))


def test_hue_shift_values():
    assert int(_hue_shift(-0.3)) == 180  # int(-76.5) = -76 -> 256 - 76
    assert int(_hue_shift(-0.5)) == 129
    assert int(_hue_shift(0.3)) == 76
    assert int(_hue_shift(0.)) == 0


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
@pytest.mark.parametrize('factor', [0., 0.1, 0.3, 0.5])
def test_nonnegative_hue_equals_original(img, backend, factor):
    out = mmcv.adjust_hue(img, factor, backend=backend)
    orig = mmcv.adjust_hue.__wrapped__(img, factor, backend=backend)
    assert np.array_equal(out, orig)


def test_hue_zero_is_identity_up_to_hsv_round_trip(img):
    out = mmcv.adjust_hue(img, 0., backend='cv2')
    # the round trip through 8-bit HSV is lossy, but only slightly
    assert np.abs(out.astype(int) - img.astype(int)).max() <= 8
    assert np.mean(out == img) > 0.5
    assert np.array_equal(out, _ref_hue_cv2(img, 0))


def test_argument_checks_kept(img):
    with pytest.raises(ValueError, match='hue_factor'):
        mmcv.adjust_hue(img, 0.7)
    with pytest.raises(ValueError, match='backend'):
        mmcv.adjust_hue(img, 0.1, backend='turbo')
    with pytest.raises(TypeError):
        mmcv.adjust_hue(img.tolist(), 0.1)


def test_color_jitter_with_hue_runs(img):
    from mmpretrain.datasets.transforms import ColorJitter
    np.random.seed(0)
    cj = ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4)
    for _ in range(20):  # draws negative hue factors with high probability
        out = cj(dict(img=img.copy()))['img']
        assert out.shape == img.shape and out.dtype == np.uint8


# ----------------------------------------------------------------------------- checkpoint loader
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'echo pwned > {self.marker}',))


def _save_mm_checkpoint(path, with_hub=True):
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import save_checkpoint
    ckpt = {'meta': {'epoch': 1, 'iter': 3, 'seed': 0},
            'state_dict': OrderedDict([('backbone.w', torch.arange(6.).view(2, 3))])}
    if with_hub:
        hub = MessageHub(name='bmaiu-compat-test')
        hub.update_scalar('train/loss', 0.5)
        hub.update_info('epoch', 1)
        ckpt['message_hub'] = hub.state_dict()
    save_checkpoint(ckpt, path)


def test_plain_mmengine_checkpoint_loads_through_patched_loader(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    path = str(tmp_path / 'epoch_1.pth')
    _save_mm_checkpoint(path, with_hub=False)
    ck = _load_checkpoint(path, map_location='cpu')
    assert torch.equal(ck['state_dict']['backbone.w'], torch.arange(6.).view(2, 3))
    assert ck['meta']['epoch'] == 1


def test_mmengine_checkpoint_with_history_buffer_loads(tmp_path):
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import _load_checkpoint
    path = str(tmp_path / 'epoch_1.pth')
    _save_mm_checkpoint(path, with_hub=True)
    # without the patch, torch>=2.6's default weights_only=True load fails on this file
    if tuple(int(v) for v in torch.__version__.split('+')[0].split('.')[:2]) >= (2, 6):
        import pickle
        with pytest.raises(pickle.UnpicklingError):
            torch.load(path)
    ck = _load_checkpoint(path)
    buf = ck['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer) and buf.current() == 0.5
    assert buf.statistics('mean') == 0.5  # statistics methods still resolve after loading
    assert torch.equal(ck['state_dict']['backbone.w'], torch.arange(6.).view(2, 3))


def test_history_buffer_pickles_plain_data_only(tmp_path):
    path = str(tmp_path / 'hub.pth')
    _save_mm_checkpoint(path, with_hub=True)
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    assert not any('getattr' in g for g in unsafe), unsafe
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe  # allow-listed by the plugin


def test_stock_mmengine_pickles_getattr(stock_mmengine_ckpt):
    """Premise of the next test: stock mmengine writes builtins.getattr references."""
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(stock_mmengine_ckpt)
    assert 'builtins.getattr' in unsafe


def test_stock_mmengine_checkpoint_loads_through_patched_loader(stock_mmengine_ckpt):
    from mmengine.runner.checkpoint import _load_checkpoint
    ck = _load_checkpoint(stock_mmengine_ckpt)
    assert ck['message_hub']['log_scalars']['train/loss'].current() == 0.75


def test_malicious_checkpoint_refused_through_mmengine(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint
    marker = tmp_path / 'PWNED'
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': _Evil(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        _load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        load_checkpoint(torch.nn.Linear(1, 1), path)
    assert not marker.exists()


def test_missing_file_through_mmengine(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    with pytest.raises(FileNotFoundError):
        _load_checkpoint(str(tmp_path / 'none.pth'))


def test_package_import_applied_patches():
    from bmaiu_plugin import compat
    assert {'checkpoint', 'hue'} <= compat._PATCHED
    assert bmaiu_plugin.__version__
