"""Linear probe, BA / ASR / ASR_all / PA, and the registered BackdoorProbeMetric."""
import math

import pytest
import torch
import torch.nn as nn

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.evaluation import (BackdoorProbeMetric, backdoor_metrics, normalize_features,
                                     train_linear_probe)
from bmaiu_plugin.models.features import PixelNormalizer, pool_features
from bmaiu_plugin.registry import METRICS


def _one_hot_logits(classes, n_cls=4):
    """Features that *are* the logits of an identity head: argmax == ``classes``."""
    return torch.eye(n_cls)[torch.as_tensor(classes)]


# ------------------------------------------------------------------------------- backdoor_metrics
def test_backdoor_metrics_by_hand():
    head = nn.Identity()
    target = 2
    clean_labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    clean_pred = [0, 1, 2, 0, 0, 3, 2, 3, 1, 1]  # 7 / 10 right
    trig_labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    trig_pred = [2, 2, 2, 3, 0, 2, 2, 2, 0, 1]
    # non-target images (label != 2): idx 0,1,3,4,5,7,8,9 -> 8 images
    #   pred == 2 at idx 0,1,5,7          -> ASR = 4/8 = 50
    #   pred == label at idx 3,4,8,9      -> PA  = 4/8 = 50
    # all 10 images: pred == 2 at idx 0,1,2,5,6,7 -> ASR_all = 6/10 = 60
    m = backdoor_metrics(head, _one_hot_logits(clean_pred), clean_labels,
                         _one_hot_logits(trig_pred), trig_labels, target)
    assert m['BA'] == pytest.approx(70.)
    assert m['ASR'] == pytest.approx(50.)
    assert m['ASR_all'] == pytest.approx(60.)
    assert m['PA'] == pytest.approx(50.)
    assert set(m) == {'BA', 'ASR', 'ASR_all', 'PA'}


def test_backdoor_metrics_target_class_excluded():
    head = nn.Identity()
    labels = torch.tensor([1, 1, 1, 0])
    # every triggered image goes to class 1; only the class-0 image counts for ASR / PA
    m = backdoor_metrics(head, _one_hot_logits([1, 1, 1, 0], 2), labels,
                         _one_hot_logits([1, 1, 1, 1], 2), labels, target=1)
    assert m == {'BA': 100., 'ASR': 100., 'ASR_all': 100., 'PA': 0.}
    m = backdoor_metrics(head, _one_hot_logits([1, 1, 1, 0], 2), labels,
                         _one_hot_logits([1, 1, 1, 0], 2), labels, target=1)
    assert m['ASR'] == 0. and m['PA'] == 100. and m['ASR_all'] == 75.
    # a trigger set made only of target-class images has no ASR / PA
    only_target = torch.tensor([1, 1])
    m = backdoor_metrics(head, _one_hot_logits([1, 1], 2), only_target,
                         _one_hot_logits([1, 0], 2), only_target, target=1)
    assert math.isnan(m['ASR']) and math.isnan(m['PA']) and m['ASR_all'] == 50.


# ---------------------------------------------------------------------------- train_linear_probe
def _blobs(n_per=100, n_cls=4, dim=16, sep=6., seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n_cls, dim, generator=g) * sep
    labels = torch.arange(n_cls).repeat_interleave(n_per)
    feats = means[labels] + torch.randn(len(labels), dim, generator=g)
    return feats, labels, means


def test_linear_probe_separates_blobs():
    x, y, means = _blobs(seed=0)
    head = train_linear_probe(x, y, 4, epochs=10, batch_size=64, lr=0.1, seed=0)
    assert isinstance(head, nn.Linear) and head.out_features == 4 and not head.training
    with torch.no_grad():
        acc = (head(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95
    # held-out points from the same blobs
    g = torch.Generator().manual_seed(99)
    yt = torch.arange(4).repeat_interleave(50)
    xt = means[yt] + torch.randn(len(yt), 16, generator=g)
    with torch.no_grad():
        assert (head(xt).argmax(1) == yt).float().mean().item() > 0.95


def test_linear_probe_is_deterministic_for_a_seed():
    x, y, _ = _blobs(seed=1)
    x = normalize_features(x, 'l2')[0]
    h1 = train_linear_probe(x, y, 4, epochs=3, seed=5)
    h2 = train_linear_probe(x, y, 4, epochs=3, seed=5)
    h3 = train_linear_probe(x, y, 4, epochs=3, seed=6)
    assert torch.equal(h1.weight, h2.weight) and torch.equal(h1.bias, h2.bias)
    assert not torch.equal(h1.weight, h3.weight)


def test_normalize_features_modes():
    x = torch.tensor([[3., 4.], [0., 2.], [1., 0.]])
    l2, stats = normalize_features(x, 'l2')
    assert stats is None
    assert torch.allclose(l2, torch.tensor([[.6, .8], [0., 1.], [1., 0.]]))
    assert normalize_features(x, None)[0] is x
    st, stats = normalize_features(x, 'standardize')
    assert torch.allclose(st.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(st.std(0), torch.ones(2), atol=1e-5)
    again, same = normalize_features(x[:1], 'standardize', stats)  # reuses the train stats
    assert same is stats and torch.allclose(again, st[:1])
    with pytest.raises(ValueError, match='normalization'):
        normalize_features(x, 'whiten')


def test_pool_features_and_pixel_normalizer():
    assert pool_features(torch.ones(2, 5, 3, 3)).shape == (2, 5)
    out = pool_features((torch.zeros(2, 3, 4, 4), torch.arange(16.).view(1, 1, 4, 4)))
    assert out.shape == (1, 1) and out.item() == 7.5
    assert pool_features(torch.ones(2, 7)).shape == (2, 7)
    norm = PixelNormalizer(mean=[10., 20., 30.], std=[2., 4., 5.], bgr_to_rgb=True)
    x = torch.tensor([30., 20., 10.]).view(1, 3, 1, 1).to(torch.uint8)
    # flipped to (10, 20, 30), then exactly the mean -> zero
    assert torch.equal(norm(x), torch.zeros(1, 3, 1, 1))


# ---------------------------------------------------------------------------- BackdoorProbeMetric
N_CLS, DIM = 4, 16


def _results(shift=1.0, target=2, trig_name='patch', with_reference=True, ref_class=1,
             seed=0, dup=False):
    """One dict per image, as BackdoorProbeLoop feeds the metric."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(N_CLS, DIM, generator=g) * 4.
    out = []

    def add(set_name, labels, feats, tgt=-1):
        for i, (f, lab) in enumerate(zip(feats, labels.tolist())):
            out.append({'feat': f, 'label': lab, 'set': set_name, 'idx': i, 'target': tgt})

    def sample(labels):
        return means[labels] + torch.randn(len(labels), DIM, generator=g) * 0.5

    y_tr = torch.arange(N_CLS).repeat_interleave(60)
    add('probe_train', y_tr, sample(y_tr))
    y_te = torch.arange(N_CLS).repeat_interleave(25)
    clean = sample(y_te)
    add('clean', y_te, clean)
    t_mean = means[target if target >= 0 else ref_class]
    trig = (1 - shift) * clean + shift * t_mean  # shifted toward the target class' mean
    add(trig_name, y_te, trig, tgt=target)
    if with_reference:
        y_ref = torch.full((10,), ref_class)
        add('reference', y_ref, sample(y_ref))
    if dup:  # padded samplers repeat the first items of every set
        out += [dict(r) for r in out if r['idx'] < 5]
    return out


def _metric(**kw):
    return BackdoorProbeMetric(epochs=10, batch_size=64, lr=0.1, seed=0, **kw)


def test_metric_strong_shift_gives_high_asr():
    m = _metric().compute_metrics(_results(shift=0.95, target=2))
    assert m['BA'] > 95.
    assert m['patch/ASR'] > 90.
    assert m['patch/ASR_all'] > 90.
    assert m['patch/PA'] < 10.
    assert m['patch/target'] == 2
    assert m['reference_class'] == 1


def test_metric_no_shift_gives_low_asr():
    m = _metric().compute_metrics(_results(shift=0.0, target=2))
    assert m['BA'] > 95.
    assert m['patch/ASR'] < 20.
    assert m['patch/PA'] > 90.
    # no shift: the triggered set is the clean set, so PA == BA over non-target images and
    # ASR_all is the target class' share (25 %) at most up to probe errors
    assert abs(m['patch/ASR_all'] - 25.) < 5.
    assert set(m) == {'BA', 'reference_class', 'patch/ASR', 'patch/ASR_all', 'patch/PA',
                      'patch/target'}


def test_metric_dedupes_padded_duplicates():
    metric = _metric()
    # shift 0.45 sits on the decision boundary (ASR ~77 %), so any change to the probe's
    # training set (duplicates kept) would show in the numbers
    plain = metric.compute_metrics(_results(shift=0.45, target=3))
    head = metric.last_head
    assert 50. < plain['patch/ASR'] < 95.
    padded = metric.compute_metrics(_results(shift=0.45, target=3, dup=True))
    assert padded == plain
    assert torch.equal(metric.last_head.weight, head.weight)
    undeduped = _metric()
    res = _results(shift=0.45, target=3, dup=True)
    for i, r in enumerate(res):  # give the duplicates fresh indices: now they count
        if i >= len(res) - 20:
            r['idx'] = 10_000 + i
    other = undeduped.compute_metrics(res)
    assert not torch.equal(undeduped.last_head.weight, head.weight)
    assert other != plain
    grouped = BackdoorProbeMetric._group(_results(dup=True))
    assert len(grouped['probe_train']['label']) == 240
    assert len(grouped['clean']['label']) == 100
    assert len(grouped['patch']['label']) == 100
    assert len(grouped['reference']['label']) == 10
    # items come back in idx order whatever the arrival order
    shuffled = list(reversed(_results()))
    assert torch.equal(BackdoorProbeMetric._group(shuffled)['clean']['feat'],
                       BackdoorProbeMetric._group(_results())['clean']['feat'])


def test_metric_auto_target_from_reference():
    m = _metric().compute_metrics(_results(shift=0.95, target=-1, ref_class=3))
    assert m['reference_class'] == 3
    assert m['patch/target'] == 3
    assert m['patch/ASR'] > 90.


def test_metric_auto_target_without_reference_raises():
    with pytest.raises(RuntimeError, match='reference'):
        _metric().compute_metrics(_results(target=-1, with_reference=False))


def test_metric_needs_train_and_clean():
    res = [r for r in _results() if r['set'] != 'clean']
    with pytest.raises(RuntimeError, match='probe_train and clean'):
        _metric().compute_metrics(res)


def test_metric_several_triggers_and_registry():
    res = _results(shift=0.95, target=2, trig_name='ctrl')
    res += [r for r in _results(shift=0.0, target=0, trig_name='patch')
            if r['set'] == 'patch']
    metric = METRICS.build(dict(type='BackdoorProbeMetric', epochs=10, seed=0,
                                feature_norm='standardize'))
    m = metric.compute_metrics(res)
    assert m['ctrl/ASR'] > 90. and m['patch/ASR'] < 20.
    assert m['ctrl/target'] == 2 and m['patch/target'] == 0
    assert isinstance(metric.last_head, nn.Linear)
    # process() collects the samples as given
    metric.process(None, res[:3])
    assert metric.results == res[:3]


# ------------------------------------------------------------------------- shared ASR / PA maths
def test_attack_rates_with_one_target_or_one_per_image():
    from bmaiu_plugin.evaluation.probe import attack_rates
    pred = torch.tensor([2, 2, 2, 3, 0, 2, 2, 2, 0, 1])
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    assert attack_rates(pred, labels, 2) == pytest.approx(dict(ASR=50., ASR_all=60., PA=50.))
    # a target per image (BackdoorBench's bd_test labels): the same when they are all 2
    assert attack_rates(pred, labels, torch.full_like(labels, 2)) == attack_rates(pred, labels, 2)
    per = torch.tensor([2, 2, 2, 3, 1, 2, 2, 2, 1, 1])  # 6 images with label != their target
    assert attack_rates(pred, labels, per)['ASR'] == pytest.approx(100. * 4 / 6)


# --------------------------------------------------------------------------- BTS / CCS diagnostic
def test_implant_diagnostics_match_the_stage_formula():
    """BTS / CCS / trigger shifts computed as BMAIU's stage-1 report defines them."""
    from bmaiu_plugin.evaluation.diagnostics import implant_diagnostics
    from bmaiu_plugin.models.finetune_base import cosine
    from bmaiu_plugin.triggers import build_trigger
    torch.manual_seed(0)
    encs = [nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU()) for _ in range(3)]
    f0, f1, f2 = encs
    norm = PixelNormalizer((125., 120., 110.), (50., 50., 50.))
    trig = build_trigger(dict(type='PatchTrigger', size=4, pattern='random', position='random'))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (2100, 3, 12, 12), generator=g, dtype=torch.uint8)
    ref = x[:5]
    own = [dict(name='custom', trigger=trig, target=-1)]
    specs = dict(suspect=dict(encoder=f0),
                 implanted=dict(encoder=f1, triggers=own, reference=ref),
                 defended=dict(encoder=f2, triggers=own, reference=ref))
    got = implant_diagnostics(specs, x, norm, seed=7)
    feats = lambda enc, im: torch.cat([pool_features(enc(norm(im[i:i + 256])))  # noqa: E731
                                       for i in range(0, len(im), 256)])
    with torch.no_grad():
        xs = x[:2000]
        gen = torch.Generator().manual_seed(7)
        xe = torch.cat([trig(xs[i:i + 256], generator=gen) for i in range(0, len(xs), 256)])
        r1 = feats(f1, ref).mean(0, keepdim=True)
        f1_x, f1_xe, f0_x = feats(f1, xs), feats(f1, xe), feats(f0, xs)
        want = dict(BTS=cosine(f1_xe, r1).mean().item(), BTS_clean=cosine(f1_x, r1).mean().item(),
                    CCS=cosine(f1_x, f0_x).mean().item(),
                    trigger_shift_f1=cosine(f1_xe, f1_x).mean().item())
        want['BTS_gap'] = want['BTS'] - want['BTS_clean']
        want['trigger_shift_f2'] = cosine(feats(f2, xe), feats(f2, xs)).mean().item()
    assert got == {k: round(v, 4) for k, v in want.items()}
    # stage 1 (no defended encoder besides f1): no f2 shift; no reference: nothing
    del specs['defended']
    assert 'trigger_shift_f2' not in implant_diagnostics(specs, x, norm, seed=7)
    specs['implanted']['reference'] = None
    assert implant_diagnostics(specs, x, norm, seed=7) == {}
