"""The defense-side trigger search: it raises the suspect's reaction and never reads the attack."""
import pytest
import torch

from bmaiu_plugin.defenses.trigger_search import search_patch_pattern
from bmaiu_plugin.models.features import PixelNormalizer
from bmaiu_plugin.defenses import BMAIU, SearchedTriggerUnlearning
from bmaiu_plugin.triggers import PatchTrigger
from bmaiu_plugin.utils.errors import ConfigValueError
from mmpretrain.registry import MODELS

TINY = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
            norm_cfg=dict(type='BN'))


def _encoder(tiny_resnet=False):
    """A frozen encoder; by default a random linear map, whose clean features are spread out
    (pairwise cosine ~0), so a patch can visibly collapse them."""
    torch.manual_seed(0)
    enc = MODELS.build(TINY) if tiny_resnet else torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 32))
    enc.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def _imgs(n=64, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('objective', ['collapse', 'shift'])
def test_search_moves_the_objective_the_intended_way(objective):
    enc, norm = _encoder(), PixelNormalizer((125., 123., 114.), (52., 51., 51.))
    trig = PatchTrigger(size=16, pattern='random', position=(8, 8), seed=3, img_size=32)
    before = [p.clone() for p in enc.parameters()]
    start = trig.pattern.clone()
    pattern, info = search_patch_pattern(enc, norm, _imgs(), trig, steps=15, lr=0.3,
                                         batch_size=16, objective=objective)
    assert pattern.shape == (3, 16, 16) and 0 <= pattern.min() and pattern.max() <= 255
    assert not torch.equal(pattern, start) and torch.equal(trig.pattern, start)
    if objective == 'collapse':  # mean pairwise cosine of triggered features goes up
        assert info['end'] > info['start'] + 0.05
    else:  # cosine of triggered to clean features goes down
        assert info['end'] < info['start'] - 0.05
    assert all(torch.equal(a, b) for a, b in zip(before, enc.parameters()))


def test_search_bad_values():
    enc, norm = _encoder(), PixelNormalizer((125., 123., 114.), (52., 51., 51.))
    trig = PatchTrigger(size=4, pattern='random', position='random', img_size=32)
    with pytest.raises(ConfigValueError, match='objective'):
        search_patch_pattern(enc, norm, _imgs(), trig, objective='loudest')
    with pytest.raises(ConfigValueError, match='batch_size >= 2'):
        search_patch_pattern(enc, norm, _imgs(), trig, batch_size=1)


def _searched(**kw):
    kw.setdefault('trigger', dict(type='PatchTrigger', size=6, pattern='random',
                                  position='random', seed=1))
    kw.setdefault('search', dict(steps=5, lr=0.3, batch_size=8))
    model = SearchedTriggerUnlearning(backbone=TINY, reference=dict(mode='random_class', num=4),
                                      **kw)
    model.sync_frozen(['suspect'])
    return model


def test_searched_defense_searches_its_trigger_on_the_suspect():
    model = _searched()
    start = model.trigger.pattern.clone()
    model.search_images = _imgs(32)
    info = model.search_trigger('suspect')
    assert set(info) == {'objective', 'start', 'end'} and info['end'] > info['start']
    assert not torch.equal(model.trigger.pattern, start)
    for bad, match in ((dict(stepz=3), 'unknown SearchedTriggerUnlearning search keys'),
                       (dict(objective='loud'), 'objective must be one of'),
                       (dict(batch_size=1), 'batch_size must be >= 2')):
        with pytest.raises(ConfigValueError, match=match):
            _searched(search=bad)
    with pytest.raises(ConfigValueError, match='needs a PatchTrigger'):
        _searched(trigger=dict(type='RandomPatchFamily', sizes=(3, 6)))


def _runner(model, epoch):
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    return SimpleNamespace(model=model, epoch=epoch, hooks=[],
                           logger=MMLogger.get_instance('test_trigger_search'))


def test_search_hook_repeats_on_the_student_every_interval():
    from bmaiu_plugin.defenses import TriggerSearchHook
    model = _searched(search=dict(steps=4, lr=0.3, batch_size=8), restart_steps=2)
    model.search_images = _imgs(16)
    model.train()
    hook = TriggerSearchHook(interval=2)
    hook.before_train(_runner(model, 0))
    patterns = [model.trigger.pattern.clone()]
    for epoch in range(4):
        hook.before_train_epoch(_runner(model, epoch))
        patterns.append(model.trigger.pattern.clone())
    changed = [not torch.equal(a, b) for a, b in zip(patterns, patterns[1:])]
    assert changed == [True, False, True, False]  # epochs 0 and 2
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.backbone.training or model.freeze_bn
    with pytest.raises(ConfigValueError, match='needs a model that searches its trigger'):
        TriggerSearchHook(interval=1).before_train(_runner(BMAIU(backbone=TINY), 0))
    TriggerSearchHook(interval=None).before_train(_runner(BMAIU(backbone=TINY), 0))  # off
