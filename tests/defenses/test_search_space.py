"""The searched-trigger defense's search space beyond patches: each member stamps only what its
budget allows, batched equals per image, its search raises the collapse without touching the
encoder, and the defense searches, unlearns and reports every member."""
import pytest
import torch

from bmaiu_plugin.defenses import SearchedTriggerUnlearning
from bmaiu_plugin.defenses.search_space import (AdditiveSearch, MaskPatternSearch,
                                                WarpSearch, WindowPatchSearch, search_collapse,
                                                window_grid)
from bmaiu_plugin.models.features import PixelNormalizer
from bmaiu_plugin.registry import TRIGGERS
from bmaiu_plugin.triggers.warp import warp_grid
from bmaiu_plugin.utils.errors import ConfigValueError
from test_trigger_search import TINY, _encoder, _imgs, _runner

NORM = PixelNormalizer((125., 123., 114.), (52., 51., 51.))
MEMBERS = [dict(type='WindowPatchSearch', size=8, stride=8),
           dict(type='MaskPatternSearch', area=64.),
           dict(type='AdditiveSearch', eps=8.),
           dict(type='WarpSearch', k=4, strength=2.)]


def _member(cfg, theta_scale=1.):
    """The member with a large random ``theta``, so the budgets are at their limits."""
    t = TRIGGERS.build(dict(cfg, seed=3))
    t.theta.copy_(theta_scale * torch.randn(t.theta.shape,
                                            generator=torch.Generator().manual_seed(1)))
    return t


@pytest.mark.parametrize('cfg', MEMBERS[1:], ids=lambda c: c['type'])
def test_full_image_members_batched_equal_per_image(cfg):
    t, x = _member(cfg, 3.), _imgs(6).float()
    batched = t(x)
    assert torch.allclose(batched, torch.cat([t(x[i:i + 1]) for i in range(len(x))]), atol=1e-4)
    assert 0 <= batched.min() and batched.max() <= 255 and batched.shape == x.shape


def test_window_member_pastes_one_window_pattern_per_image_evenly():
    t, x = _member(MEMBERS[0], 3.), _imgs(32).float()
    out = t(x, generator=torch.Generator().manual_seed(0))
    patterns = 127.5 * (torch.tanh(t.theta) + 1)
    pos = window_grid(32, 32, 8, 8)
    assert torch.equal(t.positions, pos) and t.num_groups == len(pos) == 16
    used = []
    for i in range(len(x)):
        changed = (out[i] != x[i]).any(0).nonzero()
        (y0, x0), (y1, x1) = changed.min(0).values.tolist(), changed.max(0).values.tolist()
        assert y1 - y0 < 8 and x1 - x0 < 8  # inside one 8x8 window
        k = next(k for k, (py, px) in enumerate(pos.tolist())
                 if py <= y0 and y1 < py + 8 and px <= x0 and x1 < px + 8)
        py, px = pos[k].tolist()
        assert torch.allclose(out[i, :, py:py + 8, px:px + 8], patterns[k], atol=1e-4)
        used.append(k)
    assert sorted(used) == sorted(list(range(16)) * 2)  # dealt out evenly: two per window


def test_each_window_alone_is_the_fixed_place_patch_the_member_pastes_there():
    t, x = _member(MEMBERS[0], 3.), _imgs(32).float()
    out, win = t.stamp_with(x, t.theta, torch.Generator().manual_seed(0))
    for k in (0, 5, 15):
        patch = t.group_trigger(k)
        py, px = t.positions[k].tolist()
        assert patch.position == (py, px) and patch.size == 8
        alone = patch(x)
        outside = torch.ones(32, 32, dtype=torch.bool)
        outside[py:py + 8, px:px + 8] = False
        assert torch.equal(alone[:, :, outside], x[:, :, outside])
        # the member's own stamp on the images it dealt to window k, up to the rounding
        dealt = win == k
        assert dealt.sum() == 2
        assert (alone[dealt] - out[dealt]).abs().max() <= 0.5 + 1e-4
    assert MaskPatternSearch(img_size=32).group_trigger(0).family == 'mask'  # one group: itself


def test_additive_member_is_bounded_by_eps():
    t, x = _member(MEMBERS[2], 5.), _imgs(8).float()
    delta = t(x) - x
    assert delta.abs().max() <= 8. + 1e-4 and delta.abs().max() > 7.  # at the bound, not over


def test_mask_member_mixes_mask_and_pattern_and_penalises_area():
    t = _member(MEMBERS[1])
    x = _imgs(4).float()
    m, p = t.mask_pattern(t.theta)
    assert torch.allclose(t(x), (1 - m) * x + m * p, atol=1e-4)
    assert float(t.penalty(t.theta)) > 0  # a random mask covers ~half the image: over 64 px
    t.theta[0] = -10.  # mask ~0: under the area, no penalty, nothing changes
    assert float(t.penalty(t.theta)) == 0. and torch.allclose(t(x), x, atol=0.02)


def test_warp_member_moves_pixels_by_at_most_0_7_strength():
    t = _member(MEMBERS[3], 10.)  # tanh saturated: every control point at +-1
    grid = warp_grid(torch.tanh(t.theta), t.strength, 32, 32)
    identity = warp_grid(torch.zeros_like(t.theta), t.strength, 32, 32)
    shift_px = (grid - identity).abs().max() * 31 / 2  # normalised [-1, 1] -> pixels
    # strength / 2 at the control points, up to 1.4x that between them (bicubic overshoot)
    assert 0.9 < shift_px <= 0.7 * t.strength
    flat = torch.full((2, 3, 32, 32), 77.)
    assert torch.allclose(t(flat), flat, atol=1e-3)  # a warp keeps constant images


@pytest.mark.parametrize('cfg', MEMBERS, ids=lambda c: c['type'])
def test_search_raises_the_collapse_and_leaves_the_encoder(cfg):
    enc, t = _encoder(), TRIGGERS.build(cfg)
    before, start = [p.clone() for p in enc.parameters()], t.theta.clone()
    theta, info = search_collapse(t, enc, NORM, _imgs(64), steps=15, lr=0.3, batch_size=32)
    assert info['end'] > info['start'] + 0.02, info
    assert theta.shape == start.shape and not torch.equal(theta, start)
    assert torch.equal(t.theta, start)  # the member is written by the caller
    assert all(torch.equal(a, b) and a.grad is None for a, b in zip(before, enc.parameters()))


def test_search_and_members_bad_values():
    enc, t = _encoder(), WindowPatchSearch(size=8, stride=8)
    with pytest.raises(ConfigValueError, match='16 groups and needs batch_size >= 32, got 16'):
        search_collapse(t, enc, NORM, _imgs(64), batch_size=16)  # two per window of 16
    for build, match in ((lambda: AdditiveSearch(eps=0), 'additive eps'),
                         (lambda: MaskPatternSearch(area=-1), 'mask area'),
                         (lambda: WarpSearch(strength=float('nan')), 'warp strength'),
                         (lambda: WindowPatchSearch(size=40), 'does not fit')):
        with pytest.raises(ConfigValueError, match=match):
            build()


def _defense(**kw):
    model = SearchedTriggerUnlearning(
        backbone=TINY, reference=dict(mode='random_class', num=4),
        trigger=dict(type='PatchTrigger', size=6, pattern='random', position='random', seed=1),
        search=dict(steps=4, lr=0.3, batch_size=32), search_space=MEMBERS, **kw)
    model.sync_frozen(['suspect'])
    return model


def test_defense_searches_every_member_and_unlearns_them_together():
    from bmaiu_plugin.defenses import TriggerSearchHook
    model = _defense(restart_steps=2)
    model.search_images = _imgs(48)
    names = ['custom-window', 'custom-mask', 'custom-additive', 'custom-warp']
    assert model.member_names() == names
    starts = [m.theta.clone() for m in model.members]
    info = model.search_trigger('suspect')
    assert set(info) == {'objective', 'start', 'end', *names}
    assert all(not torch.equal(a, m.theta) for a, m in zip(starts, model.members))
    # the re-search runs on the encoder being unlearned, warm-started, for every member
    hook, searched = TriggerSearchHook(interval=1), [m.theta.clone() for m in model.members]
    hook.before_train(_runner(model, 0))
    hook.before_train_epoch(_runner(model, 0))
    assert all(not torch.equal(a, m.theta) for a, m in zip(searched, model.members))
    # one trigger per image, drawn over the patch and the four members
    model.reference = _imgs(4, seed=5).float()
    model.train()
    losses = model.loss(_imgs(40, seed=2).float())
    assert all(torch.isfinite(v) for v in losses.values())
    own = model.probe_encoders()['defended']['triggers']
    assert [t['name'] for t in own] == ['custom'] + names
    # resumed from its state dict, the searched members come back
    other = _defense()
    other.load_state_dict(model.state_dict())
    assert all(torch.equal(a.theta, b.theta) for a, b in zip(model.members, other.members))


def test_defense_report_keeps_the_first_search_per_member():
    model = _defense()
    model.member_results.copy_(torch.tensor([[.5, .9], [.4, .8], [.3, .7], [.2, .6]]))
    model.search_result.copy_(torch.tensor([.1, .2]))
    report = model.defense_report()['trigger_search']
    assert report['start'] == .1 and report['end'] == .2
    assert report['members']['custom-mask'] == dict(start=.4, end=.8)
    assert 'members' not in SearchedTriggerUnlearning(
        backbone=TINY, search=dict(steps=1)).defense_report()['trigger_search']


@pytest.mark.parametrize('space, match', [
    ([dict(type='PatchTrigger', size=4)], 'not a searchable trigger'),
    (['mask'], 'must be a dict with a type'),
    ([dict(type='MaskPatternSearch', area=0)], 'mask area'),
])
def test_defense_search_space_bad_config(space, match):
    with pytest.raises(ConfigValueError, match=match):
        SearchedTriggerUnlearning(backbone=TINY, search_space=space)


def test_defense_checks_the_search_batch_feeds_every_window_at_build():
    with pytest.raises(ConfigValueError, match=r'search_space\[0\] \(WindowPatchSearch\) .* '
                                               r'needs search.batch_size >= 32, got 16'):
        SearchedTriggerUnlearning(backbone=TINY, search=dict(batch_size=16),
                                  search_space=MEMBERS[:1])
