"""BadEncoder: loss terms equal their definitions; the effectiveness term pulls triggers to R."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.attacks import BadEncoder
from bmaiu_plugin.models.finetune_base import cosine

from conftest import REPO_ROOT  # noqa: E402

REPO = REPO_ROOT
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
    es = Config.fromfile(
        osp.join(REPO, 'configs/attacks/estas_resnet18_simclr_1xb256-20e_cifar10.py'))
    assert es.model.frozen_target is True and es.model.targets[0]['reference']['num'] == 1


def test_needs_a_target():
    with pytest.raises(ValueError, match='at least one'):
        BadEncoder(backbone=TINY, targets=[])


def test_loss_is_the_pure_function_of_its_features():
    """``BadEncoder.loss`` is ``badencoder_loss`` of the features it computes."""
    from bmaiu_plugin.attacks import badencoder_loss
    m, x = model(lambda1=0.5, lambda2=2.), imgs()
    losses = m.loss(x)
    with torch.no_grad():
        f, f_t = m.features(m.backbone, x), m.features(m.teacher, x)
        fe = m.features(m.backbone, m.triggers[0](x))
        r_s, r_t = m.features(m.backbone, m.references[0]), m.features(m.teacher, m.references[0])
    pure = badencoder_loss(fe, r_s.mean(0, keepdim=True), r_s, r_t, f, f_t, 0.5, 2.)
    assert pure.keys() == losses.keys()
    for k in pure:
        assert pure[k].item() == pytest.approx(losses[k].item(), rel=1e-5, abs=1e-7)
    # one target as tensors or as one-element lists: the same numbers
    listed = badencoder_loss([fe], [r_s.mean(0, keepdim=True)], [r_s], [r_t], f, f_t, 0.5, 2.)
    assert all(torch.equal(listed[k], pure[k]) for k in pure)
    with pytest.raises(ValueError, match='same number'):
        badencoder_loss([fe, fe], [r_s], [r_s], [r_t], f, f_t)


def test_prepare_selects_the_references(fake_cifar):
    from bmaiu_plugin.datasets import BackdoorCIFAR10
    root, _ = fake_cifar
    ds = BackdoorCIFAR10(data_root=root, split='train', check_md5=False, pipeline=[])
    torch.manual_seed(0)
    m = BadEncoder(backbone=TINY, targets=[dict(trigger=WHITE, reference=dict(
        mode='class', class_index=9, num=2))])
    m.prepare(ds)
    assert len(m.references) == 1 and m.references[0].shape == (2, 3, 32, 32)
    info = m.preparation_summary()
    assert info == m.reference_info and info[0]['class_index'] == 9
    assert all(ds.get_data_info(i)['gt_label'] == 9 for i in info[0]['indices'])
