"""PatchTrigger / ApplyTrigger: positions, pasting, dtypes, patterns, errors."""
import os
import os.path as osp

import numpy as np
import pytest
import torch

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.registry import TRANSFORMS, TRIGGERS
from bmaiu_plugin.triggers import ApplyTrigger, PatchTrigger, build_trigger
from bmaiu_plugin.utils.errors import ConfigValueError

from conftest import REPO_ROOT

#: An HTBA trigger image (``data/triggers``, or ``$BMAIU_TRIGGER_ROOT``, as the configs read it).
_TRIGGER_ROOT = os.environ.get('BMAIU_TRIGGER_ROOT') or osp.join(REPO_ROOT, 'data', 'triggers')
HTBA_TRIGGER = osp.join(_TRIGGER_ROOT, 'htba', 'trigger_10.png')


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _expected_paste(imgs, pattern, positions):
    """Reference: a per-sample Python loop doing the slicing paste."""
    out = imgs.clone()
    s = pattern.shape[-1]
    for i, (y, x) in enumerate(positions.tolist()):
        out[i, :, y:y + s, x:x + s] = pattern
    return out


# ----------------------------------------------------------------------------- random positions
def test_random_positions_paste_exact_pattern_and_nothing_else():
    trig = PatchTrigger(size=5, pattern='random', position='random', seed=3)
    imgs = torch.zeros(16, 3, 32, 32)
    pos = trig.sample_positions(16, 32, 32, generator=_gen(1))
    assert pos.shape == (16, 2) and pos.dtype == torch.long
    out = trig.stamp_at(imgs, pos)
    assert out.shape == imgs.shape
    for i, (y, x) in enumerate(pos.tolist()):
        assert torch.equal(out[i, :, y:y + 5, x:x + 5], trig.pattern)
        rest = out[i].clone()
        rest[:, y:y + 5, x:x + 5] = 0
        assert torch.count_nonzero(rest) == 0  # every other pixel is unchanged (still 0)
    assert torch.equal(out, _expected_paste(imgs, trig.pattern, pos))


def test_random_positions_cover_the_whole_valid_range():
    size = 4
    trig = PatchTrigger(size=size, position='random')
    pos = trig.sample_positions(4000, 32, 32, generator=_gen(0))
    for axis in (0, 1):
        assert pos[:, axis].min().item() == 0
        assert pos[:, axis].max().item() == 32 - size
        # every corner in [0, 28] shows up
        assert set(pos[:, axis].tolist()) == set(range(0, 32 - size + 1))


def test_random_positions_respect_area_bounds():
    size = 4
    trig = PatchTrigger(size=size, position='random', area=(0.25, 0.75))
    pos = trig.sample_positions(4000, 32, 32, generator=_gen(0))
    # corner drawn from [0.25*32, 0.75*32 - size] = [8, 20]: the patch lies in rows/cols 8..23
    assert pos.min().item() == 8
    assert pos.max().item() == 24 - size
    assert set(pos[:, 0].tolist()) == set(range(8, 21))
    imgs = torch.zeros(64, 3, 32, 32)
    white = PatchTrigger(size=size, pattern='white', area=(0.25, 0.75))
    out = white(imgs, _gen(5))
    touched = out.amax(dim=(0, 1)) > 0
    ys, xs = torch.nonzero(touched, as_tuple=True)
    assert ys.min() >= 8 and ys.max() <= 23 and xs.min() >= 8 and xs.max() <= 23


def test_random_positions_are_seeded():
    trig = PatchTrigger(size=4)
    a = trig.sample_positions(32, 32, 32, generator=_gen(7))
    b = trig.sample_positions(32, 32, 32, generator=_gen(7))
    c = trig.sample_positions(32, 32, 32, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ------------------------------------------------------------------------------ fixed positions
def test_badencoder_white_square_at_21_21():
    trig = PatchTrigger(size=10, pattern='white', position=(21, 21))
    imgs = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    out = trig(imgs)
    expected = torch.zeros_like(imgs)
    expected[:, :, 21:31, 21:31] = 255  # BadEncoder: rows/cols 21-30 inclusive
    assert torch.equal(out, expected)
    assert (out[:, :, 21:31, 21:31] == 255).all()
    assert (out[:, :, 31] == 0).all() and (out[:, :, :, 31] == 0).all()
    assert (out[:, :, 20] == 0).all() and (out[:, :, :, 20] == 0).all()


@pytest.mark.parametrize('pos,expected', [((-10, -10), (22, 22)), ((-10, 3), (22, 3)),
                                          ((0, -12), (0, 20))])
def test_negative_positions_count_from_the_edge(pos, expected):
    trig = PatchTrigger(size=10, pattern='white', position=pos)
    got = trig.sample_positions(3, 32, 32)
    assert got.tolist() == [list(expected)] * 3
    out = trig(torch.zeros(1, 3, 32, 32))
    y, x = expected
    ref = torch.zeros(1, 3, 32, 32)
    ref[..., y:y + 10, x:x + 10] = 255
    assert torch.equal(out, ref)


@pytest.mark.parametrize('size', [4, 8, 10])
def test_float_positions_are_ratios_of_the_free_range(size):
    trig = PatchTrigger(size=size, pattern='white', position=(0.9, 0.9))
    corner = int(0.9 * (32 - size))
    assert trig.sample_positions(2, 32, 32).tolist() == [[corner, corner]] * 2
    out = trig(torch.zeros(3, 32, 32))
    ys, xs = torch.nonzero(out[0] > 0, as_tuple=True)
    assert ys.min().item() == corner and xs.min().item() == corner
    assert ys.max().item() == corner + size - 1 and xs.max().item() == corner + size - 1
    # the extremes: 0.0 is the top-left corner, 1.0 flush with the bottom-right edge
    assert PatchTrigger(size=size, position=(0., 1.)).sample_positions(1, 32, 32).tolist() == \
        [[0, 32 - size]]


# ---------------------------------------------------------------------------- dtypes / blending
def test_uint8_in_uint8_out_float_in_float_out():
    trig = PatchTrigger(size=4, pattern='random', position=(2, 3), seed=1)
    u8 = torch.full((2, 3, 32, 32), 7, dtype=torch.uint8)
    out = trig(u8)
    assert out.dtype == torch.uint8
    assert torch.equal(out[:, :, 2:6, 3:7], trig.pattern.to(torch.uint8).expand(2, -1, -1, -1))
    f32 = u8.float()
    outf = trig(f32)
    assert outf.dtype == torch.float32
    assert torch.equal(outf, out.float())
    f64 = u8.double()
    assert trig(f64).dtype == torch.float64
    # an unbatched (C, H, W) image keeps its shape
    single = trig(u8[0])
    assert single.shape == (3, 32, 32) and single.dtype == torch.uint8
    assert torch.equal(single, out[0])


def test_alpha_blending_values():
    trig = PatchTrigger(size=4, pattern='white', position=(0, 0), alpha=0.5)
    imgs = torch.full((1, 3, 32, 32), 100.)
    out = trig(imgs)
    assert torch.allclose(out[..., :4, :4], torch.full((1, 3, 4, 4), 0.5 * 100 + 0.5 * 255))
    assert (out[..., :4, :4] == 177.5).all()
    out[..., :4, :4] = 100.
    assert (out == 100.).all()
    trig25 = PatchTrigger(size=4, pattern='black', position=(0, 0), alpha=0.25)
    out = trig25(torch.full((1, 3, 32, 32), 200, dtype=torch.uint8))
    assert (out[..., :4, :4] == 150).all() and (out[..., 4:, :] == 200).all()


@pytest.mark.parametrize('alpha', [0., -0.5, 1.5])
def test_bad_alpha_raises(alpha):
    with pytest.raises(ConfigValueError, match='alpha'):
        PatchTrigger(size=4, alpha=alpha)


# ------------------------------------------------------------------------------------- errors
def test_trigger_larger_than_image_raises_naming_sizes():
    trig = PatchTrigger(size=40, pattern='white', position='random')
    with pytest.raises(ConfigValueError) as e:
        trig(torch.zeros(1, 3, 32, 32))
    assert '40x40' in str(e.value) and '32x32' in str(e.value)
    with pytest.raises(ConfigValueError) as e:
        PatchTrigger(size=40, position=(0, 0))(torch.zeros(1, 3, 32, 32))
    assert '40x40' in str(e.value) and '32x32' in str(e.value)


@pytest.mark.parametrize('pos', [(30, 30), (0, 23), (-1, 0), (-40, 0)])
def test_trigger_placed_outside_raises_naming_sizes(pos):
    trig = PatchTrigger(size=10, pattern='white', position=pos)
    with pytest.raises(ConfigValueError) as e:
        trig(torch.zeros(1, 3, 32, 32))
    msg = str(e.value)
    assert '10x10' in msg and '32x32' in msg and str(pos) in msg


def test_img_size_is_checked_at_build():
    with pytest.raises(ConfigValueError, match='40x40.*32x32'):
        PatchTrigger(size=40, img_size=32)
    with pytest.raises(ConfigValueError, match='20x20.*16x64'):
        PatchTrigger(size=20, img_size=(16, 64))
    PatchTrigger(size=32, img_size=32)  # exactly fits
    PatchTrigger(size=8, img_size=(32, 32))


@pytest.mark.parametrize('kwargs,match', [
    (dict(size=0), 'size'), (dict(size=-3), 'size'),
    (dict(size=4, area=(0.8, 0.2)), 'area'), (dict(size=4, area=(0., 1.5)), 'area'),
    (dict(size=4, position='center'), 'position'), (dict(size=4, position=(1, 2, 3)), 'position'),
    (dict(size=None, pattern='random'), 'size'),
    (dict(size=4, pattern='/no/such/trigger.png'), 'not found'),
    (dict(size=4, pattern=123), 'unsupported'),
])
def test_bad_config_raises_config_value_error(kwargs, match):
    with pytest.raises(ConfigValueError, match=match):
        PatchTrigger(**kwargs)


def test_channel_mismatch_raises():
    trig = PatchTrigger(size=4, channels=1, position=(0, 0))
    with pytest.raises(ConfigValueError, match='channels'):
        trig(torch.zeros(1, 3, 32, 32))


# ------------------------------------------------------------------------------------ patterns
def test_image_file_pattern_resized(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
    path = str(tmp_path / 'trig.png')
    Image.fromarray(arr).save(path)
    trig = PatchTrigger(size=8, pattern=path)
    pat = trig.pattern
    assert pat.shape == (3, 8, 8)
    assert pat.dtype == torch.float32
    assert pat.min() >= 0 and pat.max() <= 255
    assert torch.equal(pat, pat.round())  # whole pixel values
    # size=None keeps the file's own size and exact values (RGB, CHW)
    own = PatchTrigger(size=None, pattern=path, position=(0, 0))
    assert own.size == 20
    assert torch.equal(own.pattern, torch.from_numpy(arr).permute(2, 0, 1).float())
    # a uniform image resizes to the same uniform value
    Image.fromarray(np.full((16, 16, 3), 77, np.uint8)).save(str(tmp_path / 'flat.png'))
    flat = PatchTrigger(size=8, pattern=str(tmp_path / 'flat.png'))
    assert (flat.pattern == 77).all()


@pytest.mark.skipif(not osp.isfile(HTBA_TRIGGER), reason=f'{HTBA_TRIGGER} not present')
def test_htba_trigger_file_resized_to_8():
    trig = PatchTrigger(size=8, pattern=HTBA_TRIGGER, position='random', area=(0.1, 0.9))
    assert trig.pattern.shape == (3, 8, 8)
    assert trig.pattern.min() >= 0 and trig.pattern.max() <= 255
    assert trig.pattern.std() > 0  # not a flat patch
    out = trig(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), _gen(0))
    assert out.dtype == torch.uint8 and out.shape == (4, 3, 32, 32)


def test_random_pattern_is_seeded():
    a = PatchTrigger(size=6, pattern='random', seed=11).pattern
    b = PatchTrigger(size=6, pattern='random', seed=11).pattern
    c = PatchTrigger(size=6, pattern='random', seed=12).pattern
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == (3, 6, 6) and a.min() >= 0 and a.max() <= 255
    assert torch.equal(a, a.round())


def test_array_patterns_hwc_chw_and_2d():
    rng = np.random.default_rng(1)
    chw = rng.integers(0, 256, size=(3, 5, 5)).astype(np.float32)
    hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
    t_chw = PatchTrigger(size=5, pattern=chw).pattern
    t_hwc = PatchTrigger(size=5, pattern=hwc).pattern
    assert torch.equal(t_chw, torch.from_numpy(chw))
    assert torch.equal(t_hwc, torch.from_numpy(chw))
    gray = PatchTrigger(size=5, pattern=chw[0]).pattern
    assert gray.shape == (3, 5, 5) and all(torch.equal(gray[c], t_chw[0]) for c in range(3))


def test_white_and_black_patterns():
    assert (PatchTrigger(size=3, pattern='white').pattern == 255).all()
    assert (PatchTrigger(size=3, pattern='black').pattern == 0).all()


# ------------------------------------------------------------------------------------ batching
def test_whole_batch_stamped_in_one_call():
    trig = PatchTrigger(size=4, pattern='random', position='random', seed=0)
    rng = torch.Generator().manual_seed(123)
    imgs = torch.randint(0, 256, (64, 3, 32, 32), generator=rng, dtype=torch.uint8)
    # the same generator state drives forward() and sample_positions()
    out = trig(imgs, _gen(9))
    pos = trig.sample_positions(64, 32, 32, generator=_gen(9))
    assert pos.unique(dim=0).shape[0] > 32  # genuinely per-sample positions
    expected = _expected_paste(imgs.float(), trig.pattern, pos).to(torch.uint8)
    assert torch.equal(out, expected)
    for i in range(64):
        y, x = pos[i].tolist()
        assert torch.equal(out[i, :, y:y + 4, x:x + 4].float(), trig.pattern)


def test_built_from_registry_and_moves_with_module():
    trig = build_trigger(dict(type='PatchTrigger', size=4, pattern='white', position=(1, 1)))
    assert isinstance(trig, PatchTrigger) and trig.size == 4
    assert build_trigger(trig) is trig and build_trigger(None) is None
    assert 'PatchTrigger' in TRIGGERS.module_dict
    assert 'pattern' in trig.state_dict()


# -------------------------------------------------------------------------------- ApplyTrigger
def test_apply_trigger_transform_changes_exactly_the_patch():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, size=(32, 32, 3), dtype=np.uint8)  # < 255 everywhere
    tf = ApplyTrigger(trigger=dict(type='PatchTrigger', size=5, pattern='white',
                                   position=(4, 20)), seed=0)
    res = tf(dict(img=img.copy()))
    out = res['img']
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    changed = np.any(out != img, axis=2)
    expected = np.zeros((32, 32), bool)
    expected[4:9, 20:25] = True
    assert np.array_equal(changed, expected)
    assert (out[4:9, 20:25] == 255).all()


def test_apply_trigger_transform_random_position_and_prob():
    img = np.full((32, 32, 3), 10, dtype=np.uint8)
    tf = TRANSFORMS.build(dict(type='ApplyTrigger', seed=3,
                               trigger=dict(type='PatchTrigger', size=6, pattern='white')))
    out = tf(dict(img=img.copy()))['img']
    ys, xs = np.nonzero(np.any(out != img, axis=2))
    assert len(ys) == 36
    assert ys.max() - ys.min() == 5 and xs.max() - xs.min() == 5
    # the same seed repeats the same position
    tf2 = ApplyTrigger(trigger=dict(type='PatchTrigger', size=6, pattern='white'), seed=3)
    assert np.array_equal(tf2(dict(img=img.copy()))['img'], out)
    never = ApplyTrigger(trigger=dict(type='PatchTrigger', size=6), prob=0., seed=0)
    assert np.array_equal(never(dict(img=img.copy()))['img'], img)
    assert 'prob=0.0' in repr(never)


def test_img_size_build_check_covers_fixed_position():
    with pytest.raises(ConfigValueError, match='10x10'):
        PatchTrigger(size=10, pattern='white', position=(30, 30), img_size=32)


# ----------------------------------------------------------------------------- patch family
def test_random_patch_family_per_image_patterns_one_side_per_call():
    from bmaiu_plugin.triggers import RandomPatchFamily
    fam = RandomPatchFamily(sizes=(3, 6), img_size=32)
    imgs = torch.zeros(16, 3, 32, 32)
    sides, patterns = set(), []
    for seed in range(12):
        out = fam(imgs, generator=_gen(seed))
        changed = (out != 0).any(1)  # (B, H, W) pixels touched by a non-zero pattern value
        counts = changed.flatten(1).sum(1)
        side = int(round(counts.float().max().item() ** 0.5))
        assert 3 <= side <= 6
        assert (counts <= side * side).all() and (counts >= side * side - 3).all()
        sides.add(side)
        ys, xs = torch.nonzero(changed[0], as_tuple=True)
        patterns.append(out[0, :, ys.min():ys.min() + side, xs.min():xs.min() + side].flatten())
    assert sides == {3, 4, 5, 6}  # every side of the range is drawn
    # a new pattern per image: two images of one batch differ
    out = fam(imgs, generator=_gen(0))
    assert not torch.equal(out[0].sum((1, 2)), out[1].sum((1, 2)))
    # seeded
    assert torch.equal(fam(imgs, generator=_gen(3)), fam(imgs, generator=_gen(3)))
    assert fam.size == 6  # the build-time side is restored after each call


def test_random_patch_family_checks_and_registry():
    with pytest.raises(ConfigValueError, match='sizes'):
        build_trigger(dict(type='RandomPatchFamily', sizes=(5, 2)))
    with pytest.raises(ConfigValueError, match='does not fit'):
        build_trigger(dict(type='RandomPatchFamily', sizes=(3, 40), img_size=32))
    fam = build_trigger(dict(type='RandomPatchFamily', sizes=(4, 4)))
    x = torch.full((2, 3, 8, 8), 7, dtype=torch.uint8)
    y = fam(x, generator=_gen(1))
    assert y.dtype == torch.uint8 and ((y != 7).any(0).any(0).sum() <= 32)
