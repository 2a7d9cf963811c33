"""BadEncoder: loss terms equal their definitions; the effectiveness term pulls triggers to R."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.models import BadEncoder
from bmaiu_plugin.models.finetune_base import cosine

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
            norm_cfg=dict(type='BN'))
WHITE = dict(type='PatchTrigger', size=10, pattern='white', position=(21, 21))


def model(**kw):
    torch.manual_seed(0)
    m = BadEncoder(backbone=TINY, targets=[dict(trigger=WHITE)], flip_reference=False, **kw)
    m.sync_frozen(['teacher'])
    m.references = [torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)]
    return m.train()


def imgs(n=8):
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(3),
                         dtype=torch.uint8)


def test_terms_at_start_match_definitions():
    m, x = model(), imgs()
    losses = m.loss(x)
    # f' == f at the start: utility and reference terms vanish
    assert losses['loss_utility'].item() == pytest.approx(0., abs=1e-6)
    assert losses['loss_reference'].item() == pytest.approx(0., abs=1e-6)
    with torch.no_grad():
        fe = m.features(m.backbone, m.triggers[0](x))
        fr = m.features(m.backbone, m.references[0])
    assert losses['loss_effect'].item() == pytest.approx((1 - cosine(fe, fr)).mean().item(),
                                                         rel=1e-5)


@pytest.mark.parametrize('frozen_target', [False, True])
def test_effectiveness_pulls_triggered_features_to_the_reference(frozen_target):
    m, x = model(frozen_target=frozen_target), imgs(16)
    opt = torch.optim.SGD([p for p in m.backbone.parameters() if p.requires_grad], lr=0.05)

    def cos_to_ref():
        with torch.no_grad():
            target = m.teacher if frozen_target else m.backbone  # the anchor L0 pulls toward
            return cosine(m.features(m.backbone, m.triggers[0](x)),
                          m.features(target, m.references[0])).mean().item()

    before = cos_to_ref()
    for _ in range(5):
        loss = m.loss(x)['loss_effect']
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert cos_to_ref() > before + 1e-3


def test_multitarget_and_estas_configs_build():
    mt = Config.fromfile(osp.join(
        REPO, 'configs/attacks/badencoder-multitarget_resnet18_simclr_1xb64-20e_cifar10.py'))
    assert [t['reference']['class_index'] for t in mt.model.targets] == list(range(10))
    assert mt.evaluate_attack == 'multitarget'
    es = Config.fromfile(osp.join(REPO, 'configs/attacks/estas_resnet18_simclr_1xb256-20e_cifar10.py'))
    assert es.model.frozen_target is True and es.model.targets[0]['reference']['num'] == 1


def test_needs_a_target():
    with pytest.raises(ValueError, match='at least one'):
        BadEncoder(backbone=TINY, targets=[])
