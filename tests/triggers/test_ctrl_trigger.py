"""CTRLTrigger: checked against an independent YUV + blockwise DCT-II computation."""
import math

import numpy as np
import pytest
import torch

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.triggers import CTRLTrigger, build_trigger
from bmaiu_plugin.triggers.ctrl import dct_matrix
from bmaiu_plugin.utils.errors import ConfigValueError

try:
    import scipy.fft as _sfft
except ImportError:  # pragma: no cover - scipy is optional
    _sfft = None

# kornia.color.rgb_to_yuv (BT.601), written out independently of the module under test
RGB2YUV = np.array([[0.299, 0.587, 0.114],
                    [-0.147, -0.289, 0.436],
                    [0.615, -0.515, -0.100]])


def _np_dct_matrix(n):
    """Orthonormal DCT-II matrix, from the textbook definition."""
    d = np.zeros((n, n))
    for k in range(n):
        a = math.sqrt(1. / n) if k == 0 else math.sqrt(2. / n)
        for i in range(n):
            d[k, i] = a * math.cos(math.pi * (2 * i + 1) * k / (2 * n))
    return d


def block_dct(x, window):
    """Orthonormal 2-D DCT-II of every ``window x window`` block of ``(C, H, W)`` float64."""
    c, h, w = x.shape
    blocks = x.reshape(c, h // window, window, w // window, window)
    if _sfft is not None:
        out = _sfft.dctn(blocks, type=2, axes=(2, 4), norm='ortho')
    else:
        d = _np_dct_matrix(window)
        out = np.einsum('ij,cyjxk,lk->cyixl', d, blocks, d)
    return out.reshape(c, h, w)


def yuv(x):
    return np.einsum('ij,jhw->ihw', RGB2YUV, x)


def freq_diff(out, inp, window=32):
    """DCT(YUV(out)) - DCT(YUV(in)) for one ``(3, H, W)`` image, float64."""
    o = out.double().numpy()
    i = inp.double().numpy()
    return block_dct(yuv(o), window) - block_dct(yuv(i), window)


def _mid_gray(b=2, h=32, w=32, seed=0):
    """Mid-gray images with mild texture: 128 +- 40, so a +-22 shift never clamps."""
    g = torch.Generator().manual_seed(seed)
    return 128. + (torch.rand(b, 3, h, w, generator=g) - 0.5) * 80.


def test_dct_matrix_is_orthonormal_dct2():
    d = dct_matrix(8).numpy()
    assert np.allclose(d, _np_dct_matrix(8), atol=1e-12)
    assert np.allclose(d @ d.T, np.eye(8), atol=1e-12)
    if _sfft is not None:  # the scipy path and the explicit-matrix path agree
        x = np.random.default_rng(0).normal(size=(3, 32, 32))
        m = _np_dct_matrix(16)
        blocks = x.reshape(3, 2, 16, 2, 16)
        by_matrix = np.einsum('ij,cyjxk,lk->cyixl', m, blocks, m).reshape(3, 32, 32)
        assert np.allclose(block_dct(x, 16), by_matrix, atol=1e-10)


@pytest.mark.parametrize('magnitude', [100., 30., -50.])
def test_frequency_shift_is_exact_at_the_coefficients_and_zero_elsewhere(magnitude):
    trig = CTRLTrigger(magnitude=magnitude)
    x = _mid_gray()
    out = trig(x)
    assert out.dtype == torch.float32
    assert out.min() > 0 and out.max() < 255  # nothing clamped
    for b in range(x.shape[0]):
        diff = freq_diff(out[b], x[b])
        expected = np.zeros_like(diff)
        for ch in (1, 2):  # U and V
            for (u, v) in ((15, 15), (31, 31)):
                assert abs(diff[ch, u, v] - magnitude) < 1e-3
                expected[ch, u, v] = magnitude
        assert np.abs(diff - expected).max() < 1e-3
        assert np.abs(diff[0]).max() < 1e-3  # Y untouched


def test_rgb_change_at_magnitude_100():
    trig = CTRLTrigger(magnitude=100.)
    x = torch.full((1, 3, 32, 32), 128.)
    d = (trig(x) - x)[0]
    max_change = d.abs().amax(dim=(1, 2)).tolist()
    for got, want in zip(max_change, (12., 10., 22.)):  # R, G, B
        assert abs(got - want) <= 1.5, max_change
    # the pattern is the same on every image and independent of the content
    x2 = _mid_gray(b=3, seed=4)
    assert torch.allclose(trig(x2) - x2, d.expand(3, -1, -1, -1), atol=1e-4)


def test_window_16_shifts_each_of_the_four_blocks():
    trig = CTRLTrigger(magnitude=60., window=16, positions=((7, 7), (15, 15)))
    x = _mid_gray(b=1, seed=2)
    out = trig(x)
    diff = freq_diff(out[0], x[0], window=16)
    expected = np.zeros_like(diff)
    for by in (0, 16):
        for bx in (0, 16):
            for ch in (1, 2):
                for (u, v) in ((7, 7), (15, 15)):
                    assert abs(diff[ch, by + u, bx + v] - 60.) < 1e-3
                    expected[ch, by + u, bx + v] = 60.
    assert np.abs(diff - expected).max() < 1e-3
    # every block gets the same pixel pattern
    d = (out - x)[0]
    assert torch.allclose(d[:, :16, :16], d[:, 16:, 16:], atol=1e-4)
    assert torch.allclose(d[:, :16, :16], d[:, :16, 16:], atol=1e-4)


def test_channels_argument_selects_yuv_channels():
    trig = CTRLTrigger(magnitude=40., channels=(0,), positions=((3, 5),))
    x = _mid_gray(b=1, seed=1)
    diff = freq_diff(trig(x)[0], x[0])
    assert abs(diff[0, 3, 5] - 40.) < 1e-3
    diff[0, 3, 5] = 0.
    assert np.abs(diff).max() < 1e-3


def test_magnitude_zero_is_identity():
    x = _mid_gray(b=2, seed=5)
    assert (CTRLTrigger(magnitude=0.)(x) - x).abs().max() < 1e-3
    u8 = x.round().to(torch.uint8)
    assert torch.equal(CTRLTrigger(magnitude=0.)(u8), u8)


def test_uint8_batch_equals_per_image_and_clamps():
    trig = CTRLTrigger(magnitude=100.)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 32), generator=g, dtype=torch.uint8)
    out = trig(x)
    assert out.dtype == torch.uint8
    per = torch.stack([trig(x[i]) for i in range(6)])
    assert torch.equal(out, per)
    ref = (x.float() + (trig(torch.full((1, 3, 32, 32), 128.)) - 128.)).clamp(0, 255)
    assert (out.float() - ref.round()).abs().max() <= 1


@pytest.mark.parametrize('kwargs', [dict(window=16),  # default (31, 31) >= 16
                                    dict(positions=((32, 0),)), dict(positions=((-1, 3),)),
                                    dict(positions=((1, 2, 3),)), dict(window=0),
                                    dict(channels=(3,))])
def test_invalid_config_raises(kwargs):
    with pytest.raises(ConfigValueError):
        CTRLTrigger(**kwargs)


@pytest.mark.parametrize('shape', [(1, 3, 48, 48), (1, 3, 32, 40), (1, 3, 24, 24)])
def test_window_that_does_not_tile_raises(shape):
    with pytest.raises(ConfigValueError, match='tile'):
        CTRLTrigger(window=32)(torch.zeros(shape))


def test_non_rgb_raises():
    with pytest.raises(ConfigValueError, match='RGB'):
        CTRLTrigger()(torch.zeros(1, 1, 32, 32))


def test_larger_images_tiled_by_window():
    trig = build_trigger(dict(type='CTRLTrigger', magnitude=50.))
    x = _mid_gray(b=1, h=64, w=64, seed=3)
    diff = freq_diff(trig(x)[0], x[0], window=32)
    assert abs(diff[1, 32 + 15, 15] - 50.) < 1e-3
    assert abs(diff[2, 63, 63] - 50.) < 1e-3
