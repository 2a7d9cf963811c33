"""SSL-Cleanse: MAD index, lambda schedule, detector on a planted backdoor, mitigator, configs."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.apis import finalize_config
from bmaiu_plugin.defenses.sslcleanse.detector import (LambdaSchedule, mad_anomaly_index,
                                              sslcleanse_detect, stamp_mask_pattern)
from bmaiu_plugin.models.features import PixelNormalizer
from bmaiu_plugin.defenses import SSLCleanse
from bmaiu_plugin.models.finetune_base import cosine
from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError
from conftest import REPO_ROOT

REPO = REPO_ROOT
CFG = osp.join(REPO, 'configs', 'defenses', 'sslcleanse_resnet18_1xb256-20e_cifar10.py')
CFG_W16 = osp.join(REPO, 'configs', 'defenses', 'sslcleanse_resnet18-w16_1xb256-20e_cifar10.py')
TINY_BACKBONE = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
                     norm_cfg=dict(type='BN'))

# ---- a constructed encoder with a planted patch backdoor ---------------------------------------
K, PER = 5, 16
POS, SIZE = (26, 26), 4
MEAN, STD = (127.5, 127.5, 127.5), (64., 64., 64.)
COLOURS = [[220, 40, 40], [40, 200, 60], [50, 60, 210], [200, 200, 50], [150, 60, 190]]


def group_images(seed: int = 0):
    """``K`` groups of ``PER`` noisy images of one colour each (clear clusters), and groups."""
    g = torch.Generator().manual_seed(seed)
    cols = torch.tensor(COLOURS, dtype=torch.float).repeat_interleave(PER, 0)
    x = cols[:, :, None, None] + 25 * torch.randn(K * PER, 3, 32, 32, generator=g)
    low = 20 * torch.randn(K * PER, 3, 2, 2, generator=g)
    x = x + F.interpolate(low, size=32, mode='bilinear', align_corners=False)
    return x.clamp(0, 255).round().to(torch.uint8), torch.arange(K).repeat_interleave(PER)


class CleanEncoder(nn.Module):
    """A 3x3 conv + tanh, pooled to 2x2 (colour per quadrant), centred on the data.

    Its features depend on the colours of the whole image: moving other groups' images to a
    group takes a large mask.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.register_buffer('center', torch.zeros(1))

    def forward(self, x):
        return F.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 2).flatten(1) - self.center


class TrojanEncoder(nn.Module):
    """The clean encoder, but a bright 4x4 patch at ``POS`` replaces the feature by ``v``.

    ``gate = sigmoid(4 * (mean of the normalized patch region - 1))`` mixes the clean feature
    with ``v``, the mean feature of group 0 (the attacker's target): a white patch sends every
    image into the target group's cluster.
    """

    def __init__(self, clean: CleanEncoder, v: torch.Tensor):
        super().__init__()
        self.clean = clean
        self.register_buffer('v', v)

    def forward(self, x):
        y0, x0 = POS
        gate = torch.sigmoid(4 * (x[:, :, y0:y0 + SIZE, x0:x0 + SIZE].mean((1, 2, 3)) - 1))
        return (1 - gate[:, None]) * self.clean(x) + gate[:, None] * self.v


@pytest.fixture(scope='module')
def planted_result(planted):
    norm, imgs, _, _, trojan = planted
    return sslcleanse_detect(trojan, imgs, norm, **DETECT_KW)


@pytest.fixture(scope='module')
def planted():
    torch.manual_seed(0)
    norm = PixelNormalizer(MEAN, STD)
    imgs, groups = group_images()
    clean = CleanEncoder().eval()
    with torch.no_grad():
        clean.center = clean(norm(imgs)).mean(0)
        v = clean(norm(imgs))[groups == 0].mean(0)
    return norm, imgs, groups, clean, TrojanEncoder(clean, v).eval()


DETECT_KW = dict(num_clusters=K, images_per_cluster=12, kmeans_n_init=3, rounds=40,
                 steps_per_round=5, batch_size=8, check_images=48, lr=0.1, patience=2,
                 early_stop_patience=6, give_up_rounds=20, seed=0)


# ---- detector pieces ---------------------------------------------------------------------------
def test_mad_anomaly_index_known_numbers():
    r = mad_anomaly_index([0.1, 0.5, 0.6, 0.7, 0.8])
    # median 0.6; |r - median| = .5 .1 0 .1 .2 -> median 0.1; MAD = 1.4826 * 0.1
    assert r['median'] == pytest.approx(0.6)
    assert r['mad'] == pytest.approx(0.14826)
    assert r['indices'] == pytest.approx([0.5 / 0.14826, 0.1 / 0.14826, 0., -0.1 / 0.14826,
                                          -0.2 / 0.14826])
    assert r['anomaly_index'] == pytest.approx(3.3725, abs=1e-4)
    assert r['flagged'] == [0]  # only the unusually small one; 0.8 is large, not suspicious
    # the released code's double scaling makes the same value less anomalous
    r2 = mad_anomaly_index([0.1, 0.5, 0.6, 0.7, 0.8], mad_scale=1.4826 / 0.6745)
    assert r2['anomaly_index'] == pytest.approx(0.5 * 0.6745 / 0.14826, rel=1e-6)
    assert mad_anomaly_index([0.1, 0.5, 0.6, 0.7, 0.8], threshold=4.)['flagged'] == []
    # even count: median = mean of the middle two
    assert mad_anomaly_index([1., 2., 3., 10.])['median'] == pytest.approx(2.5)
    # MAD 0 (most clusters at 1.0: nothing found) -> mean absolute deviation * 1.2533
    r3 = mad_anomaly_index([1., 1., 1., 0.5, 1.])
    assert r3['mad'] == pytest.approx(1.2533 * 0.1)
    assert r3['indices'][3] == pytest.approx(0.5 / 0.12533, rel=1e-6) and r3['flagged'] == [3]
    r4 = mad_anomaly_index([0.3, 0.3, 0.3])
    assert r4['indices'] == [0., 0., 0.] and r4['flagged'] == []
    with pytest.raises(ConfigValueError, match='at least 2'):
        mad_anomaly_index([0.5])


def test_lambda_schedule_moves_the_right_way():
    s = LambdaSchedule(lam_init=0.1, patience=2, multiplier=1.5)
    assert s.update(True) == 0.  # not set before `patience` successes in a row
    assert s.update(False) == 0.
    s.update(True)
    assert s.update(True) == pytest.approx(0.1)  # set
    s.update(True)
    assert s.update(True) == pytest.approx(0.15)  # success: up (stronger mask penalty)
    assert s.went_up and not s.settled
    s.update(False)
    assert s.update(False) == pytest.approx(0.1)  # failure: down
    s.update(False)
    assert s.update(False) == pytest.approx(0.1 / 1.5)
    assert s.settled
    s.update(True)  # a success resets the failure count
    assert s.update(False) == pytest.approx(0.1 / 1.5)
    with pytest.raises(ConfigValueError, match='lam_multiplier'):
        LambdaSchedule(multiplier=1.)


def test_planted_encoder_behaves_as_intended(planted):
    norm, imgs, groups, clean, trojan = planted
    x = imgs.clone()
    x[:, :, POS[0]:POS[0] + SIZE, POS[1]:POS[1] + SIZE] = 255
    with torch.no_grad():
        fc, ft = trojan(norm(imgs)), trojan(norm(x))
        target = fc[groups == 0].mean(0, keepdim=True)
        assert cosine(ft, target).min() > 0.99  # the patch sends everything to group 0
        assert (cosine(fc, clean(norm(imgs))) > 0.95).all()  # clean images: ~clean features
        # without the backdoor the patch changes nothing: patched images stay in their group
        means = torch.stack([fc[groups == j].mean(0) for j in range(K)])
        zc = F.normalize(clean(norm(x)), dim=1) @ F.normalize(means, dim=1).T
        assert torch.equal(zc.argmax(1), groups)


def test_detector_flags_the_planted_target_cluster(planted, planted_result):
    norm, imgs, groups, clean, trojan = planted
    res = planted_result
    labels = res['labels']
    # the clusters are the colour groups; which index the target group got is k-means' choice
    target = int(torch.mode(labels[groups == 0]).values)
    assert (labels[groups == 0] == target).all()
    assert res['detected'] and res['flagged'] == [target]
    assert res['anomaly_index'] == pytest.approx(res['indices'][target]) and \
        res['anomaly_index'] > 2
    l1 = torch.tensor(res['mask_l1'])
    others = torch.cat([l1[:target], l1[target + 1:]])
    assert res['found'][target] and l1[target] < 0.2 * others.min()
    assert l1[target] < 3 * SIZE * SIZE  # about the planted patch's 16 pixels
    # one trigger per cluster is kept, and the target's sits on the planted patch, bright
    assert res['mask'].shape == (K, 1, 32, 32) and res['pattern'].shape == (K, 3, 32, 32)
    m = res['mask'][target, 0]
    y0, x0 = POS
    inside = m[y0:y0 + SIZE, x0:x0 + SIZE].sum()
    assert inside > 0.5 * m.sum()
    # its trigger really works on the encoder: other groups' images go to the target group
    with torch.no_grad():
        xt = stamp_mask_pattern(imgs[groups != 0], res['mask'][target], res['pattern'][target])
        z = F.normalize(trojan(norm(xt)), dim=1)
        assert ((z @ res['centers'].T).argmax(1) == target).float().mean() >= 0.99


def test_clean_twin_needs_large_triggers_everywhere(planted, planted_result):
    norm, imgs, _, clean, _ = planted
    res = sslcleanse_detect(clean, imgs, norm, **DETECT_KW)
    # every cluster of the clean twin needs a trigger 10x the planted one; with 5 clusters the
    # MAD itself is noisy, so the index is only compared with the trojaned encoder's
    assert min(res['mask_l1']) > 10 * min(planted_result['mask_l1'])
    assert res['anomaly_index'] < 0.75 * planted_result['anomaly_index']
    # the encoder is only read: no .grad written, mode kept
    assert all(p.grad is None for p in clean.parameters())
    assert not clean.training


def test_detector_bad_inputs(planted):
    norm, imgs, _, clean, _ = planted
    with pytest.raises(ConfigValueError, match='num_clusters'):
        sslcleanse_detect(clean, imgs, norm, num_clusters=1)
    with pytest.raises(ConfigValueError, match='regularizer'):
        sslcleanse_detect(clean, imgs, norm, regularizer='l2')
    with pytest.raises(ConfigValueError, match=r'\(N, 3, H, W\)'):
        sslcleanse_detect(clean, imgs[0], norm)


# ---- the model: mitigator, buffers, bad input ----------------------------------------------------
def tiny_model(**kw) -> SSLCleanse:
    torch.manual_seed(0)
    kw.setdefault('detector', dict(num_clusters=3))
    model = SSLCleanse(backbone=TINY_BACKBONE, **kw)
    model.sync_frozen(['suspect'])
    return model


def plant_result(model: SSLCleanse, flagged=(1, )) -> None:
    """Fill the detector buffers by hand: cluster j's trigger is a 4x4 white patch at (4j, 4j)."""
    k = model.trigger_masks.shape[0]
    model.trigger_masks.zero_()
    for j in range(k):
        model.trigger_masks[j, 0, 4 * j:4 * j + 4, 4 * j:4 * j + 4] = 1
    model.trigger_patterns.fill_(255.)
    idx = torch.zeros(k)
    f = torch.zeros(k, dtype=torch.long)
    for j in flagged:
        idx[j], f[j] = 5., 1
    model.anomaly_indices.copy_(idx)
    model.flagged.copy_(f)
    model.kept.copy_(model._choose_kept(f, idx))
    model.detected.fill_(1)


def imgs(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def test_mitigator_unlearns_the_kept_trigger():
    model = tiny_model()
    plant_result(model, flagged=(1, ))
    model.train()
    x = imgs()
    losses = model.loss(x)
    # f' == f at the start: clean images cost nothing, stamped ones do
    assert losses['loss_consistency'].item() == pytest.approx(0., abs=1e-6)
    assert losses['loss_unlearn'].item() > 0
    # the stamped share is trigger_fraction (per-sample coin), with the kept trigger only
    gen = torch.Generator().manual_seed(3)
    xs, on = model.stamp(imgs(400), gen, 0.5)
    assert 0.4 < on.float().mean() < 0.6
    patch = xs[on][:, :, 4:8, 4:8]
    assert (patch == 255).all() and not (xs[on][:, :, 0:4, 0:4] == 255).all()

    def distance():  # mean 1 - cos(f'(x + t_1), f(x)) for the kept trigger, all images
        with torch.no_grad():
            xt = stamp_mask_pattern(x, model.trigger_masks[1], model.trigger_patterns[1])
            return (1 - cosine(model.features(model.backbone, xt),
                               model.features(model.suspect, x))).mean().item()

    def loss_at_step0():  # the same stamping draw every time
        step = int(model.step)
        model.step.fill_(0)
        with torch.no_grad():
            out = sum(model.loss(x).values()).item()
        model.step.fill_(step)
        return out

    suspect_before = {k: v.clone() for k, v in model.suspect.state_dict().items()}
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    before, loss_before = distance(), loss_at_step0()
    opt = torch.optim.SGD([p for p in model.backbone.parameters() if p.requires_grad], lr=0.05)
    for _ in range(8):
        loss = sum(model.loss(x).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.step += 1
    assert int(model.step) == 8
    assert loss_at_step0() < 0.85 * loss_before
    assert distance() < 0.85 * before
    assert any(not torch.equal(v, model.backbone.state_dict()[k])
               for k, v in backbone_before.items())
    assert all(torch.equal(v, model.suspect.state_dict()[k]) for k, v in suspect_before.items())
    assert all(not p.requires_grad for p in model.suspect.parameters())
    assert model.probe_encoders().keys() == {'suspect', 'defended'}


@pytest.mark.parametrize('mitigate,no_detection,flagged,kept,mode', [
    ('flagged', 'most_anomalous', (1, ), [0, 1, 0], 'flagged'),
    ('flagged', 'most_anomalous', (), [1, 0, 0], 'most_anomalous'),
    ('flagged', 'skip', (), [0, 0, 0], 'skip'),
    ('all', 'most_anomalous', (2, ), [1, 1, 1], 'all'),
])
def test_which_triggers_are_unlearned(mitigate, no_detection, flagged, kept, mode):
    model = tiny_model(mitigate=mitigate, no_detection=no_detection)
    plant_result(model, flagged=flagged)
    if not flagged:  # the largest index marks the most anomalous cluster
        model.anomaly_indices.copy_(torch.tensor([1.5, 0.2, -1.]))
        model.kept.copy_(model._choose_kept(model.flagged, model.anomaly_indices))
    assert model.kept.tolist() == kept and model.mitigation == mode
    diag = model.detection_summary()
    assert diag['mitigated_clusters'] == [j for j, v in enumerate(kept) if v]
    assert diag['backdoor_detected'] == bool(flagged)
    if mode == 'skip':  # no trigger: the loss is the clean-consistency term alone
        losses = model.loss(imgs())
        assert losses['loss_unlearn'].item() == 0.


def test_synthesized_trigger_shift_is_the_evaluators_diagnostic():
    """The evaluator's ``synth_trigger_shift_*`` equal the model's own stamping, as computed
    before the diagnostic moved to the evaluation side."""
    from bmaiu_plugin.evaluation.diagnostics import trigger_shift
    model = tiny_model()
    assert model.probe_encoders()['suspect']['triggers'] == []  # no detection: no own trigger
    plant_result(model, flagged=(1, 2))
    with torch.no_grad():  # a defended encoder that differs from the suspect
        next(model.backbone.parameters()).mul_(1.5)
    model.eval()
    x = imgs(600, seed=4)
    specs = model.probe_encoders()
    (own, ) = specs['defended']['triggers']
    assert own['target'] is None and own['name'] == 'synth_trigger'
    got = trigger_shift(specs, x, model.normalizer, seed=model.seed)
    gen = torch.Generator().manual_seed(model.seed)
    shift = {'suspect': [], 'defended': []}
    with torch.no_grad():
        for i in range(0, len(x), 256):
            xb = x[i:i + 256]
            xt, _ = model.stamp(xb, gen)
            for name, enc in (('suspect', model.suspect), ('defended', model.backbone)):
                shift[name].append(cosine(model.features(enc, xt), model.features(enc, xb)))
    want = {f'synth_trigger_shift_{k}': round(torch.cat(v).mean().item(), 4)
            for k, v in shift.items()}
    assert got == want and got['synth_trigger_shift_defended'] != 1.
    assert model.defense_report() == model.preparation_summary() == model.detection_summary()


class _ArrayDataset:
    """Minimal mmengine-style dataset of HWC uint8 images with labels."""

    def __init__(self, x: torch.Tensor, labels: torch.Tensor):
        self.imgs = x.permute(0, 2, 3, 1).numpy()
        self.labels = labels

    def __len__(self):
        return len(self.imgs)

    def get_data_info(self, i):
        return dict(img=self.imgs[i], gt_label=int(self.labels[i]))


def test_detection_lives_in_the_checkpoint(monkeypatch):
    x, groups = group_images()
    data = _ArrayDataset(x[::4], groups[::4])  # 20 images, 5 colour groups
    model = tiny_model(detector=dict(num_clusters=3, images_per_cluster=4, kmeans_n_init=2,
                                     rounds=2, steps_per_round=1, batch_size=4,
                                     check_images=4))
    with pytest.raises(RuntimeError, match='PrepareModelHook'):
        model.loss(imgs(2))
    model.prepare(data)
    assert int(model.detected) == 1 and int(model.kept.sum()) >= 1
    assert int(model.cluster_sizes.sum()) == 20 and (model.cluster_label >= 0).all()
    diag = model.detection_summary()
    assert len(diag['sslcleanse']['mask_l1']) == 3
    # a resumed run loads the buffers and does not run the detector again
    other = tiny_model(detector=dict(num_clusters=3))
    other.load_state_dict(model.state_dict())
    import bmaiu_plugin.defenses.sslcleanse.model as mod
    monkeypatch.setattr(mod, 'sslcleanse_detect',
                        lambda *a, **k: pytest.fail('detector ran again after a resume'))
    other.prepare(data)
    assert other.detection_summary() == diag
    assert torch.equal(other.trigger_masks, model.trigger_masks)
    # wrong image size: one clear error
    bad = tiny_model(detector=dict(num_clusters=3), img_size=16)
    with pytest.raises(ConfigValueError, match='img_size'):
        bad.prepare(data)


@pytest.mark.parametrize('kw,match', [
    (dict(trigger_fraction=0.), 'trigger_fraction'),
    (dict(trigger_fraction=1.5), 'trigger_fraction'),
    (dict(detector=dict(num_clusters=1)), 'num_clusters'),
    (dict(detector=dict(clusters=10)), 'unknown SSL-Cleanse detector'),
    (dict(detector=dict(success_threshold=0.)), 'success_threshold'),
    (dict(detector=dict(knn='far')), 'knn'),
    (dict(mitigate='some'), 'mitigate'),
    (dict(no_detection='panic'), 'no_detection'),
    (dict(unlearn_weight=-1.), 'unlearn_weight'),
])
def test_bad_config_values(kw, match):
    with pytest.raises(ConfigValueError, match=match):
        SSLCleanse(backbone=TINY_BACKBONE, **kw)


# ---- configs and an end-to-end run ---------------------------------------------------------------
@pytest.mark.parametrize('path', [CFG, CFG_W16])
def test_configs_build_and_keep_the_attack_with_the_evaluator(path, tmp_path):
    cfg = Config.fromfile(path)
    assert cfg.model.type == 'SSLCleanse' and cfg.train_cfg.max_epochs == 20
    assert cfg.model.trigger_fraction == 0.5 and cfg.model.detector.threshold == 2.
    text = json.dumps(cfg.model.to_dict())
    assert 'white' not in text and 'triggers' not in cfg.model
    with pytest.raises(ConfigValueError, match='encoder_checkpoint=PATH'):
        finalize_config(cfg.copy())
    bad = cfg.copy()
    bad.encoder_checkpoint = str(tmp_path / 'nope.pth')
    with pytest.raises(CheckpointError, match='not found'):
        finalize_config(bad)
    cfg.encoder_checkpoint = __file__
    cfg = finalize_config(cfg)
    assert cfg.model.encoder_checkpoint == __file__
    assert [t['name'] for t in cfg.val_cfg.triggers] == ['badencoder']
    if path == CFG_W16:
        from mmpretrain.registry import MODELS
        cfg.model.encoder_checkpoint = None
        model = MODELS.build(cfg.model)
        assert model.backbone.layer1[0].conv1.out_channels == 16
        assert model.trigger_masks.shape == (10, 1, 32, 32)
        assert cfg.val_cfg.probe_dataloader.dataset.indices == 10000


def test_train_tool_end_to_end_writes_diagnostics(fake_cifar, tmp_path):
    root, _ = fake_cifar
    from mmpretrain.registry import MODELS
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'suspect.pth')
    torch.save(MODELS.build(TINY_BACKBONE).state_dict(), ckpt)
    wd = tmp_path / 'wd'
    opts = [f'encoder_checkpoint={ckpt}', 'model.backbone.stem_channels=8',
            'model.backbone.base_channels=8', 'model.detector.num_clusters=3',
            'model.detector.images_per_cluster=8', 'model.detector.kmeans_n_init=2',
            'model.detector.rounds=3', 'model.detector.steps_per_round=1',
            'model.detector.batch_size=4', 'model.detector.check_images=8',
            'train_dataloader.dataset.ratio=1.0', 'train_dataloader.batch_size=8',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_cfg.probe_dataloader.num_workers=0',
            'val_evaluator.epochs=2', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
            'default_hooks.checkpoint.interval=1']
    env = {**os.environ, 'BMAIU_DATA_ROOT': root, 'PYTHONWARNINGS': 'ignore',
           'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, 'tools/train.py', CFG, '--work-dir', str(wd),
                        '--cfg-options'] + opts, cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.load(open(wd / 'metrics.json'))
    assert {'suspect', 'defended'} <= set(m)
    assert m['suspect']['triggers'] == 'badencoder' and 'BA' in m['defended']
    assert isinstance(m['backdoor_detected'], bool) and isinstance(m['anomaly_index'], float)
    assert m['anomaly_threshold'] == 2.0 and isinstance(m['flagged_clusters'], list)
    assert m['mitigated_clusters'] and m['mitigation'] in ('flagged', 'most_anomalous')
    d = m['sslcleanse']
    assert len(d['anomaly_indices']) == len(d['mask_l1']) == len(d['trigger_reg']) == 3
    assert 'synth_trigger_shift_suspect' in m and 'synth_trigger_shift_defended' in m
    assert osp.isfile(wd / 'defended_encoder.pth') and osp.isfile(wd / 'epoch_1.pth')
    state = torch.load(wd / 'epoch_1.pth', map_location='cpu', weights_only=False)['state_dict']
    assert int(state['detected']) == 1 and state['trigger_masks'].shape == (3, 1, 32, 32)
