"""BMAIUAblation: the CPU study's switches on top of BMAIU (projects/cpu_study/bmaiu_ablation.py).

With every switch at its default the ablation computes what BMAIU computes; each switch changes
only its own part of the losses.
"""
import os.path as osp
import sys
from types import SimpleNamespace

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import bmaiu_plugin  # noqa: E402,F401
from bmaiu_plugin.defenses import BMAIU, BMAIUStageHook, TriggerSearchHook  # noqa: E402
from bmaiu_plugin.models.finetune_base import cosine  # noqa: E402
from bmaiu_plugin.utils.errors import ConfigValueError  # noqa: E402
from projects.cpu_study.bmaiu_ablation import BMAIUAblation  # noqa: E402

TINY = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
            norm_cfg=dict(type='BN'))


def tiny(cls=BMAIUAblation, **kw):
    torch.manual_seed(0)
    kw.setdefault('reference', dict(mode='random_class', num=4))
    model = cls(backbone=TINY, **kw)
    model.sync_frozen(['suspect', 'teacher'])
    model.reference = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(3))
    return model


def imgs(n=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_defaults_compute_what_bmaiu_computes():
    a, b = tiny(BMAIU), tiny()
    x = imgs()
    for stage in (1, 2):
        if stage == 2:
            a.start_unlearning()
            b.start_unlearning()
        la, lb = a.loss(x), b.loss(x)
        assert list(la) == list(lb)
        assert all(torch.equal(la[k], lb[k]) for k in la), stage


def test_repulsion_forms():
    cos = torch.tensor([0.5, -0.3])
    assert torch.allclose(tiny(repulsion='cosine')._repel(cos), cos)
    assert torch.allclose(tiny(repulsion='hinge', hinge_margin=0.2)._repel(cos),
                          torch.tensor([0.3, 0.0]))
    assert torch.allclose(tiny(repulsion='squared')._repel(cos), torch.tensor([0.25, 0.09]))


def test_stage_blocks_limit_which_blocks_each_stage_changes():
    model = tiny(implant_blocks=('conv1', 'layer1'), unlearn_blocks=['layer4'])
    model.train()
    x = imgs()

    def changed_blocks():
        for p in model.backbone.parameters():
            p.grad = None
        sum(v for k, v in model.loss(x).items() if k.startswith('loss')).backward()
        return {n.split('.')[0] for n, p in model.backbone.named_parameters()
                if p.grad is not None and p.grad.abs().sum() > 0}

    assert changed_blocks() == {'conv1', 'layer1'}
    model.start_unlearning()
    assert changed_blocks() == {'layer4'}
    assert tiny().stage_blocks == {1: None, 2: None}
    for bad in (('layer5',), (), ('relu',)):
        with pytest.raises(ConfigValueError, match='unlearn_blocks must name'):
            BMAIUAblation(backbone=TINY, unlearn_blocks=bad)


@pytest.mark.parametrize('kw,match', [
    (dict(repulsion='cube'), 'repulsion'),
    (dict(repulsion_anchor='nowhere'), 'repulsion_anchor'),
    (dict(trigger_fraction=0.), 'trigger_fraction'),
    (dict(implant_target='x'), 'implant_target'),
    (dict(trigger_search=dict(stepz=3)), 'unknown trigger_search keys'),
    (dict(trigger_search=dict(objective='loud')), 'objective must be one of'),
    (dict(trigger_search=dict(batch_size=1)), 'batch_size must be >= 2'),
    (dict(custom_trigger=dict(type='RandomPatchFamily', sizes=(3, 6)),
          trigger_search=dict(steps=1)), 'trigger_search needs a PatchTrigger'),
])
def test_bad_config_values(kw, match):
    with pytest.raises(ConfigValueError, match=match):
        BMAIUAblation(backbone=TINY, **kw)


class _ArrayDataset:
    """Minimal mmengine-style dataset of HWC uint8 images with labels."""

    def __init__(self, n=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.imgs = torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8).numpy()

    def __len__(self):
        return len(self.imgs)

    def get_data_info(self, i):
        return dict(img=self.imgs[i], gt_label=i % 3)


@pytest.mark.parametrize('mode', ['random_class', 'kmeans'])
def test_center_features_is_the_suspect_mean_and_encodes_the_data_once(mode):
    model = tiny(center_features=True, reference=dict(mode=mode, num=2, num_clusters=3))
    data = _ArrayDataset()
    calls = []
    encode = model._encode_suspect
    model._encode_suspect = lambda x: calls.append(len(x)) or encode(x)
    model.prepare(data)
    assert calls == [len(data)]  # one pass over the defense data, shared with k-means
    x = torch.from_numpy(data.imgs).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = model.features(model.suspect, x).mean(0)
    assert torch.allclose(model.feature_center, expected, atol=1e-5)
    assert model.reference.shape == (2, 3, 32, 32)
    a, b = torch.randn(4, expected.numel()), torch.randn(4, expected.numel())
    assert torch.allclose(model._cos(a, b), cosine(a - expected, b - expected), atol=1e-5)


def _runner(model, epoch, implant_epochs=1):
    from mmengine.logging import MMLogger
    return SimpleNamespace(model=model, epoch=epoch, hooks=[BMAIUStageHook(implant_epochs)],
                           logger=MMLogger.get_instance('test_bmaiu_ablation'))


def test_search_before_stage1_and_hook_repeats_every_interval_of_stage2():
    model = tiny(custom_trigger=dict(type='PatchTrigger', size=6, pattern='random',
                                     position='random', seed=1),
                 trigger_search=dict(steps=4, lr=0.3, batch_size=8, restarts_steps=2))
    start = model.custom_trigger.pattern.clone()
    model.prepare(_ArrayDataset(16))  # R, the search images and the first search
    assert not torch.equal(model.custom_trigger.pattern, start)
    info = model.defense_report()['reference']['trigger_search']
    assert set(info) == {'objective', 'start', 'end'} and info['objective'] == 'collapse'
    model.train()
    hook = TriggerSearchHook(interval=2)
    hook.before_train(_runner(model, 0))
    patterns = [model.custom_trigger.pattern.clone()]
    for epoch in range(4):  # epoch 0 is stage 1 (implant_epochs=1): no search there
        if epoch == 1:
            model.start_unlearning()
        hook.before_train_epoch(_runner(model, epoch))
        patterns.append(model.custom_trigger.pattern.clone())
    changed = [not torch.equal(a, b) for a, b in zip(patterns, patterns[1:])]
    assert changed == [False, True, False, True]  # epochs 1 and 3: stage-2 epochs 0 and 2
    assert all(p.grad is None for p in model.backbone.parameters())
    with pytest.raises(ConfigValueError, match='needs a model that searches its trigger'):
        TriggerSearchHook(interval=1).before_train(_runner(tiny(), 0))
