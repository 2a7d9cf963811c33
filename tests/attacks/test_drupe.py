"""DRUPE: its terms equal their definitions, the distribution terms join after the warm-up, and
on real data the attack takes while its triggered features stay spread (BadEncoder's collapse
onto one embedding is what trigger-inversion defenses look for)."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.attacks import DRUPE, drupe_terms, sliced_wasserstein
from bmaiu_plugin.models.features import mean_pairwise_cosine
from bmaiu_plugin.utils.errors import ConfigValueError

from conftest import REPO_ROOT  # noqa: E402

TINY = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
            norm_cfg=dict(type='BN'))
WHITE = dict(type='PatchTrigger', size=10, pattern='white', position=(21, 21))
CONFIG = 'configs/attacks/drupe_resnet18-w16_simclr_1xb256-10e_cifar10.py'


def test_sliced_wasserstein_is_zero_on_equal_samples_and_exact_for_a_shift():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(32, 6, generator=g)
    assert sliced_wasserstein(a, a, 16, torch.Generator().manual_seed(1)).item() == 0.
    v = torch.tensor([1., -2., 0.5, 0., 3., 1.])
    # a shift moves every sorted projection by v . w: SW2^2 = mean_p (v . w_p)^2
    w = F.normalize(torch.randn(6, 16, generator=torch.Generator().manual_seed(1)), dim=0)
    expect = (v @ w).pow(2).mean().sqrt()
    got = sliced_wasserstein(a + v, a, 16, torch.Generator().manual_seed(1))
    assert got.item() == pytest.approx(expect.item(), rel=1e-5)


def test_terms_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    refs = torch.randn(3, 8, generator=g)
    trig = refs[[0, 1, 1, 2, 0, 2]] * 2.  # each triggered feature on one reference's ray
    clean = torch.randn(6, 8, generator=g)
    t = drupe_terms(trig, refs, clean, 8, torch.Generator().manual_seed(0))
    assert t['effect'].item() == pytest.approx(0., abs=1e-6)  # the max over references is 1
    sim = F.normalize(trig, dim=1) @ F.normalize(refs, dim=1).T
    assert t['spread_ref'].item() == pytest.approx(sim.mean(0).std().item(), rel=1e-5)
    assert t['spread_bb'].item() == pytest.approx(mean_pairwise_cosine(trig).item(), rel=1e-5)
    same = drupe_terms(clean, refs, clean, 8, torch.Generator().manual_seed(0))
    assert same['dist'].item() == 0.  # triggered features distributed like the clean ones


def _model(**kw):
    torch.manual_seed(0)
    m = DRUPE(backbone=TINY, targets=[dict(trigger=WHITE)], flip_reference=False, **kw)
    m.sync_frozen(['teacher'])
    m.references = [torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(1))]
    return m.train()


def test_distribution_terms_join_after_the_warmup():
    x = torch.randint(0, 256, (8, 3, 32, 32), generator=torch.Generator().manual_seed(3),
                      dtype=torch.uint8)
    m = _model(warmup_iters=2, lambda_ref=0., cost_spread=2., cost_dist=3.)
    losses = m.loss(x)
    assert set(losses) == {'loss_effect', 'loss_reference', 'loss_utility', 'loss_spread',
                           'loss_dist'}
    assert losses['loss_spread'].item() == 0. and losses['loss_dist'].item() == 0.
    assert losses['loss_utility'].item() == pytest.approx(0., abs=1e-6)  # f' == f at start
    m.step.fill_(2)
    losses = m.loss(x)
    with torch.no_grad():
        fe = m.features(m.backbone, m.triggers[0](x))
        fr = m.features(m.backbone, m.references[0])
        f = m.features(m.backbone, x)
    t = drupe_terms(fe, fr, f, m.num_projections, m.step_generator(x.device))
    assert losses['loss_spread'].item() == pytest.approx(
        2. * (t['spread_ref'] + t['spread_bb']).item(), rel=1e-4)
    assert losses['loss_effect'].item() == pytest.approx(t['effect'].item(), rel=1e-5)
    assert losses['loss_dist'].item() > 0.


@pytest.mark.parametrize('kw,match', [
    (dict(targets=[dict(trigger=WHITE), dict(trigger=WHITE)]), 'one trigger'),
    (dict(frozen_target=True), 'does not take frozen_target'),
    (dict(cost_dist=-1.), 'cost_dist'),
    (dict(adapt_interval=0), 'adapt_interval'),
    (dict(num_projections=0), 'num_projections'),
])
def test_bad_settings_are_one_clear_error(kw, match):
    kw = dict(dict(targets=[dict(trigger=WHITE)]), **kw)
    with pytest.raises(ConfigValueError, match=match):
        DRUPE(backbone=TINY, **kw)


def test_weights_adapt_as_the_official_schedule():
    """Every ``adapt_interval`` steps: c_s grows by 1.25 while the attack is effective, c_d
    too once the triggered features are spread; otherwise both shrink by 1.25 ** 1.25."""
    from bmaiu_plugin.attacks.drupe import COST_DOWN, COST_UP
    m = _model(cost_spread=0.1, cost_dist=0.001, adapt_interval=2)
    m._adapt(0.99, 0.95, 0.7)
    assert m.costs.tolist() == [0.1, 0.001]  # one step of the two: nothing yet
    m._adapt(0.97, 0.95, 0.3)  # effective; spread 0.5 on average (< 0.6)
    assert m.costs.tolist() == pytest.approx([0.1 * COST_UP, 0.001 * COST_UP])
    m._adapt(0.99, 0.95, 0.9)
    m._adapt(0.99, 0.95, 0.9)  # effective, collapsed: c_d shrinks
    assert m.costs.tolist() == pytest.approx([0.1 * COST_UP ** 2, 0.001 * COST_UP / COST_DOWN])
    m._adapt(0.5, 0.95, 0.1)
    m._adapt(0.5, 0.95, 0.1)  # not effective: both shrink
    assert m.costs.tolist() == pytest.approx([0.1 * COST_UP ** 2 / COST_DOWN,
                                              0.001 * COST_UP / COST_DOWN ** 2])
    assert 'costs' in m.state_dict()  # a resumed run continues the schedule


def test_configs_build_a_drupe_attack():
    cfg = Config.fromfile(osp.join(REPO_ROOT, CONFIG))
    assert cfg.model.type == 'DRUPE' and cfg.evaluate_attack == 'drupe'
    assert cfg.model.targets[0]['reference']['num'] == 3
    m = DRUPE(**{k: v for k, v in cfg.model.items() if k not in ('type', 'encoder_checkpoint')})
    assert m.warmup_iters == 100 and m.adapt_interval == 20
    assert m.backbone.conv1.out_channels == 16


@pytest.mark.slow
def test_drupe_takes_and_keeps_triggered_features_spread(asr_data, clean_encoder,
                                                         badencoder_suspect):
    """The small real-data set-up of ``test_attack_asr.py`` (width-8 encoder, 1,024 shadow
    images, lr 0.2; 200 steps, the spread and distribution terms after 40, adapted every 10):
    DRUPE's ASR rises far above the clean encoder's with BA kept, and its triggered test
    features collapse less than BadEncoder's (mean pairwise cosine). Measured (one CPU thread,
    AMD EPYC): ASR 10.6 -> 60.4, BA 43.7 -> 42.3.  At this scale single runs are chaotic in the
    budget and the CPU's float kernels: 120 steps gave ASR 26.9 on that CPU and 75.7 on an Intel
    Xeon, 240 steps 41.4.  The adapted weights stay small: the spread is partial."""
    from attack_setup import ATTACK, attack_metrics, encode, run_finetune_attack

    def edit_warmup(model_cfg):
        model_cfg.update(warmup_iters=40, adapt_interval=10)
    model = run_finetune_attack(CONFIG, clean_encoder.path, asr_data.root,
                                **dict(ATTACK, steps=200), edit=edit_warmup)
    before = attack_metrics(clean_encoder.encoder, asr_data, 'drupe')['drupe']
    after = attack_metrics(model.backbone, asr_data, 'drupe')['drupe']
    trig = bmaiu_plugin.triggers.build_trigger(WHITE)(asr_data.test_x)
    collapse = {name: float(mean_pairwise_cosine(encode(enc, trig))) for name, enc in (
        ('clean', clean_encoder.encoder), ('drupe', model.backbone),
        ('badencoder', badencoder_suspect.model.backbone))}
    print(f'\n[drupe] clean BA {before["BA"]:.2f} ASR {before["ASR"]:.2f} -> BA '
          f'{after["BA"]:.2f} ASR {after["ASR"]:.2f}; triggered collapse {collapse}')
    assert after['ASR'] > 35. and after['ASR'] > before['ASR'] + 25., (before, after)
    assert after['BA'] > before['BA'] - 8., (before, after)
    assert collapse['drupe'] < collapse['badencoder'] - 0.03, collapse
