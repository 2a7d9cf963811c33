"""The residual-backdoor audit: trigger inversion with its own budget, scored downstream."""
import pytest
import torch

from bmaiu_plugin.evaluation.audit import (AUDIT_DEFAULTS, audit_encoder, check_audit_cfg,
                                           landing_asr)
from bmaiu_plugin.models.features import CIFAR10_MEAN, CIFAR10_STD, PixelNormalizer
from bmaiu_plugin.utils.errors import ConfigValueError


def test_landing_asr_is_the_largest_share_of_other_classes_predicted_as_one():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    pred = torch.tensor([0, 0, 0, 0, 0, 2, 1, 3])  # class 0 takes 3 of the 6 non-0 images
    asr, c = landing_asr(pred, labels, 4)
    assert c == 0 and asr == pytest.approx(50.)
    asr, c = landing_asr(labels.clone(), labels, 4)  # a clean classifier: nothing lands
    assert asr == 0.


@pytest.mark.parametrize('cfg,match', [
    (dict(patch_sizes=4), 'patch_sizes must be a list'),
    (dict(patch_sizes=[0]), 'patch_sizes'),
    (dict(search_steps=0), 'search_steps'),
    (dict(batch_size=1), 'batch_size'),
    (dict(shadow_ratio=1.5), 'shadow_ratio'),
    (dict(patch_sizes=[], mask_areas=[]), 'inverts nothing'),
    (dict(mask_areas=[-1]), 'mask_areas'),
    (dict(stepz=3), "unknown audit setting"),
    ('yes', 'must be a dict'),
])
def test_bad_audit_settings_are_one_clear_error(cfg, match):
    with pytest.raises(ConfigValueError, match=match):
        check_audit_cfg(cfg)


def test_defaults_and_off():
    assert check_audit_cfg(None) is None and check_audit_cfg(dict(enable=False)) is None
    cfg = check_audit_cfg(dict(patch_sizes=[6]))
    assert cfg['patch_sizes'] == (6, ) and cfg['search_steps'] == AUDIT_DEFAULTS['search_steps']


def test_audit_runs_on_any_encoder_and_reports_each_inverted_trigger():
    """A small random encoder on synthetic images: every inverted trigger is scored, the
    reported collapse and ASR are the largest ones, and the searched triggers collapse the
    features more than the clean images do."""
    from mmpretrain.registry import MODELS
    g = torch.Generator().manual_seed(0)
    enc = MODELS.build(dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8))
    imgs = torch.randint(0, 256, (96, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.arange(96) % 4
    cfg = check_audit_cfg(dict(patch_sizes=[6], mask_areas=[64], search_steps=15,
                               batch_size=32))
    norm = PixelNormalizer(CIFAR10_MEAN, CIFAR10_STD)
    out = audit_encoder(enc, norm, imgs[:64], (imgs[:64], labels[:64]), (imgs[64:], labels[64:]),
                        cfg)
    assert set(out['triggers']) == {'patch6', 'mask64'}
    assert out['collapse'] == max(r['collapse'] for r in out['triggers'].values())
    assert out['asr'] == max(r['asr'] for r in out['triggers'].values())
    assert 0 <= out['asr'] <= 100 and out['best'] in out['triggers']
    assert out['collapse'] > out['clean_collapse']
    assert all(not p.requires_grad or p.grad is None for p in enc.parameters())
