"""Blended (Chen et al. 2017) and warping (WaNet) triggers: exact pixels, batched = per image."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bmaiu_plugin.triggers import BlendTrigger, WarpTrigger, build_trigger
from bmaiu_plugin.utils.errors import ConfigValueError


def _imgs(n=5, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)


# ------------------------------------------------------------------------------ blend
def test_blend_is_the_convex_mix_with_the_seeded_noise():
    x = _imgs()
    t = BlendTrigger(alpha=0.2, seed=7)
    k = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(7)).float()
    expect = (0.8 * x.float() + 0.2 * k).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(t(x), expect)
    assert torch.allclose(t(x.float()), 0.8 * x.float() + 0.2 * k, atol=1e-4)
    # every pixel moves toward the pattern by alpha of the distance, none elsewhere
    d = t(x.float()) - x.float()
    assert torch.allclose(d, 0.2 * (k - x.float()), atol=1e-4)


def test_blend_batched_equals_per_image_and_seeds_differ():
    x = _imgs(7)
    t = BlendTrigger(alpha=0.1, seed=3)
    assert torch.equal(t(x), torch.stack([t(xi) for xi in x]))
    assert torch.equal(t.stamp_batched(x, batch_size=3), t(x))
    assert not torch.equal(BlendTrigger(seed=3).pattern, BlendTrigger(seed=4).pattern)
    assert torch.equal(BlendTrigger(seed=3).pattern, BlendTrigger(seed=3).pattern)


def test_blend_image_pattern_resized_to_the_images(tmp_path):
    from PIL import Image
    img = np.zeros((64, 64, 3), dtype=np.uint8)
    img[:, 32:] = 255
    Image.fromarray(img).save(tmp_path / 'k.png')
    t = build_trigger(dict(type='BlendTrigger', pattern=str(tmp_path / 'k.png'), alpha=0.3))
    out = t(torch.zeros(1, 3, 32, 32))
    assert torch.allclose(out[..., :15], torch.zeros(1)) and torch.allclose(
        out[..., 17:], torch.full((1,), 0.3 * 255))


@pytest.mark.parametrize('kwargs,match', [
    (dict(alpha=0), 'blend alpha'), (dict(alpha=1.5), 'blend alpha'),
    (dict(pattern='nope.png'), 'file not found'), (dict(size=(4, 4, 4)), 'blend size'),
])
def test_blend_bad_config(kwargs, match):
    with pytest.raises(ConfigValueError, match=match):
        BlendTrigger(**kwargs)


# ------------------------------------------------------------------------------ warp
def _wanet_grid(k, s, h, seed):
    """WaNet's recipe, written out: uniform control grid, mean-|.| normalization, bicubic
    upsampling, identity + s * field / h, clamp."""
    ins = torch.rand(1, 2, k, k, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    ins = ins / torch.mean(torch.abs(ins))
    noise = F.interpolate(ins, size=h, mode='bicubic', align_corners=True).permute(0, 2, 3, 1)
    a = torch.linspace(-1, 1, h)
    x, y = torch.meshgrid(a, a, indexing='ij')
    identity = torch.stack((y, x), 2)[None]
    return torch.clamp(identity + s * noise / h, -1, 1)


def test_warp_grid_is_wanets_and_applies_to_the_whole_batch():
    t = WarpTrigger(k=4, strength=0.5, seed=11)
    assert torch.allclose(t.grid(32, 32), _wanet_grid(4, 0.5, 32, 11), atol=1e-6)
    x = _imgs(6).float()
    ref = F.grid_sample(x, _wanet_grid(4, 0.5, 32, 11).expand(6, -1, -1, -1),
                        align_corners=True)
    assert torch.allclose(t(x), ref, atol=1e-3)
    u8 = _imgs(6)
    assert torch.equal(t(u8), torch.stack([t(xi) for xi in u8]))  # batched = per image


def test_warp_moves_pixels_by_less_than_a_pixel_and_keeps_constants():
    t = WarpTrigger(strength=0.5, seed=0)
    grid = t.grid(32, 32)
    a = torch.linspace(-1, 1, 32)
    gy, gx = torch.meshgrid(a, a, indexing='ij')
    shift_px = (grid - torch.stack((gx, gy), -1)[None]).abs().max() * 31 / 2
    assert 0.05 < shift_px < 1.5  # imperceptible: a fraction of a pixel to about one
    const = torch.full((2, 3, 32, 32), 77.)
    assert torch.allclose(t(const), const, atol=1e-4)
    x = _imgs(2).float()
    assert torch.allclose(WarpTrigger(strength=0.)(x), x, atol=1e-3)  # s = 0: identity
    assert (t(x) - x).abs().mean() > 1  # the warp changes the images


def test_warp_seeded_and_checked():
    assert torch.equal(WarpTrigger(seed=1).control, WarpTrigger(seed=1).control)
    assert not torch.equal(WarpTrigger(seed=1).control, WarpTrigger(seed=2).control)
    with pytest.raises(ConfigValueError, match='warp k'):
        WarpTrigger(k=1)
    with pytest.raises(ConfigValueError, match='warp strength'):
        WarpTrigger(strength=float('nan'))
