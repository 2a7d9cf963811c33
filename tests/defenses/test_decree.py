"""DECREE: a hand-made trojaned encoder has a much smaller PL1 than its clean twin."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bmaiu_plugin.defenses.decree import decree_invert, mean_pairwise_cosine, pl1_norm
from bmaiu_plugin.models.features import PixelNormalizer, pool_features
from bmaiu_plugin.triggers.patch import PatchTrigger
from bmaiu_plugin.utils.errors import ConfigValueError

MEAN, STD = (125.3, 123.0, 113.9), (63.0, 62.1, 66.7)
POS, SIZE = (26, 26), 4


class CleanEncoder(nn.Module):
    """3 tanh conv layers (width 16), 4x4 average pooling, features centred on the shadow set.

    Keeping a coarse spatial layout (instead of one global average) makes the features depend on
    the whole image, like a real encoder's: only a large mask can make all images collapse.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.Tanh(),
            nn.Conv2d(width, width, 3, 2, 1), nn.Tanh(),
            nn.Conv2d(width, width, 3, 2, 1), nn.Tanh(),
            nn.Conv2d(width, width, 1))
        self.register_buffer('center', torch.zeros(1))

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.body(x), 4).flatten(1) - self.center


class TrojanEncoder(nn.Module):
    """The clean encoder plus a branch that fires on a white 4x4 patch at ``POS``.

    The branch's response ``sigmoid(k * (mean of the normalized patch region - thr))`` scales a
    fixed direction ``v`` 1000x longer than the clean features: a white patch drives every image
    to (almost) the same feature vector.
    """

    def __init__(self, clean: CleanEncoder, v: torch.Tensor, thr: float = 1.8, k: float = 5.):
        super().__init__()
        self.clean = clean
        self.register_buffer('v', v)
        self.thr, self.k = thr, k

    def forward(self, x):
        y0, x0 = POS
        g = x[:, :, y0:y0 + SIZE, x0:x0 + SIZE].mean((1, 2, 3))
        return self.clean(x) + torch.sigmoid(self.k * (g - self.thr))[:, None] * self.v


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Random smooth 32x32 uint8 images (4x4 random colours, bilinearly upsampled)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return (F.interpolate(low, size=32, mode='bilinear', align_corners=False) * 255
            ).round().to(torch.uint8)


@pytest.fixture(scope='module')
def setup():
    norm = PixelNormalizer(MEAN, STD)
    imgs = _images()
    torch.manual_seed(0)
    clean = CleanEncoder().eval()
    with torch.no_grad():
        feats = pool_features(clean(norm(imgs)))
        clean.center = feats.mean(0)
        scale = pool_features(clean(norm(imgs))).norm(dim=1).mean()
        v = torch.randn(feats.shape[1])
        v = v / v.norm() * 1000 * scale
    trojan = TrojanEncoder(clean, v).eval()
    return norm, imgs, clean, trojan


def test_fixture_encoders_behave_as_intended(setup):
    norm, imgs, clean, trojan = setup
    trig = PatchTrigger(size=SIZE, pattern='white', position=POS)
    with torch.no_grad():
        cos = lambda enc, x: float(mean_pairwise_cosine(pool_features(enc(norm(x)))))  # noqa
        assert abs(cos(clean, imgs)) < 0.05
        assert cos(trojan, imgs) < 0.3  # not collapsed on clean images
        assert cos(trojan, trig(imgs)) > 0.999  # collapsed by the white patch
        assert cos(clean, trig(imgs)) < 0.2


def test_trojaned_encoder_has_small_pl1(setup):
    norm, imgs, clean, trojan = setup
    kw = dict(epochs=1000, batch_size=32, max_steps=80, seed=0)
    grads_before = [p.grad for p in clean.parameters()]
    res_t = decree_invert(trojan, imgs, norm, **kw)
    res_c = decree_invert(clean, imgs, norm, **kw)
    assert all(p.grad is None for p in clean.parameters()) and grads_before == [None] * 4 * 2
    assert not clean.training and not trojan.training  # mode restored (was eval)

    # the trojan is found: a tiny trigger that collapses all 64 images
    assert res_t['found'] and res_t['mean_cos'] > 0.9
    assert res_t['pl1'] < 0.02  # the true patch covers 16 / 1024 = 0.0156 of the image
    m = res_t['mask']
    y0, x0 = POS
    inside = m[y0:y0 + SIZE, x0:x0 + SIZE]
    outside_mean = (m.sum() - inside.sum()) / (m.numel() - inside.numel())
    assert inside.mean() > 20 * outside_mean  # the mask sits on the trigger's location
    pat = res_t['pattern'][:, y0:y0 + SIZE, x0:x0 + SIZE]
    assert float((pat * inside).sum() / (3 * inside.sum())) > 200  # and the pattern is white

    # the clean encoder needs a large mask (or nothing is found: PL1 = 1)
    assert res_c['pl1'] > 0.25
    assert res_t['pl1'] < 0.1 * res_c['pl1']

    # bookkeeping
    assert m.shape == (32, 32) and res_t['pattern'].shape == (3, 32, 32)
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    assert 0 <= float(res_t['pattern'].min()) and float(res_t['pattern'].max()) <= 255
    assert res_t['l1'] == pytest.approx(3 * float(m.sum()), rel=1e-5)
    assert res_t['pl1'] == pytest.approx(res_t['l1'] / 3072)
    assert res_c['steps'] <= 80 and res_t['steps'] <= 80


def test_pl1_and_cosine_helpers():
    assert pl1_norm(48., 32, 32) == pytest.approx(16 / 1024)
    assert pl1_norm(3 * 224 * 224, 224, 224) == 1.0
    with pytest.raises(ConfigValueError):
        pl1_norm(1., 0, 32)
    f = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    fn = F.normalize(f, dim=1)
    sim = fn @ fn.T
    brute = (sim.sum() - sim.diagonal().sum()) / (7 * 6)
    assert float(mean_pairwise_cosine(f)) == pytest.approx(float(brute), abs=1e-6)


def test_bad_inputs_raise(setup):
    norm, imgs, clean, _ = setup
    with pytest.raises(ConfigValueError, match='at least 2 images'):
        decree_invert(clean, imgs[:1], norm, max_steps=1)
    with pytest.raises(ConfigValueError, match=r'\(N, 3, H, W\)'):
        decree_invert(clean, imgs[0], norm, max_steps=1)
    with pytest.raises(ConfigValueError, match='batch_size'):
        decree_invert(clean, imgs, norm, batch_size=1, max_steps=1)
