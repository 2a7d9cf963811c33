"""On-device SSL augmentation (bmaiu_plugin.augment), DeviceMultiViewPreprocessor, the speed
switches, the devaug configs and tools/benchmark.py."""
import copy
import glob
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

import bmaiu_plugin  # noqa: F401  (registration)
from bmaiu_plugin.augment import PRESETS, build_view_pipeline, ops, resolve_views
from bmaiu_plugin.models.data_preprocessor import DeviceMultiViewPreprocessor
from bmaiu_plugin.engine.perf import (AutocastOptimWrapper, CompileModulesHook,
                                     to_channels_last)
from mmpretrain.registry import DATASETS, MODELS, TRANSFORMS

from conftest import REPO_ROOT

SSL_BASE = osp.join(REPO_ROOT, 'configs/_base_/datasets/cifar10_ssl.py')
DEVAUG = sorted(glob.glob(osp.join(REPO_ROOT, 'configs/selfsup/*devaug*.py')))
MEAN, STD = [125.307, 122.961, 113.8575], [51.5865, 50.847, 51.255]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _imgs(n=8, seed=0, dtype=torch.uint8):
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=_gen(seed), dtype=torch.uint8)
    return x if dtype == torch.uint8 else x.to(dtype)


def structured_image(seed=0, s=32) -> np.ndarray:
    """A colourful HWC uint8 test image: RGB gradients plus a few flat discs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s] / (s - 1)
    img = np.stack([255 * xx, 255 * yy, 255 * (1 - xx) * (1 - yy)], -1)
    for _ in range(4):
        cy, cx = rng.uniform(0, s, 2)
        m = (yy * (s - 1) - cy) ** 2 + (xx * (s - 1) - cx) ** 2 < rng.uniform(3, 8) ** 2
        img[m] = rng.uniform(0, 255, 3)
    return img.round().astype(np.uint8)


def ks_stat(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    v = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, v, 'right') / len(a) -
                        np.searchsorted(b, v, 'right') / len(b)).max())


# ------------------------------------------------------------------ shapes, dtypes, ranges
RANDOM_OPS = {
    'crop': lambda x, g: ops.random_resized_crop(x, None, (0.2, 1.), generator=g),
    'crop_flip': lambda x, g: ops.random_resized_crop(x, (24, 20), (0.2, 1.), flip_prob=.5,
                                                      generator=g),
    'flip': lambda x, g: ops.random_hflip(x, 0.5, g),
    'jitter': lambda x, g: ops.color_jitter(x, .4, .4, .4, .1, prob=.8, generator=g),
    'gray': lambda x, g: ops.random_grayscale(x, 0.5, generator=g),
    'blur': lambda x, g: ops.random_gaussian_blur(x, (0.1, 2.), 0.5, generator=g),
    'solarize': lambda x, g: ops.random_solarize(x, 0.5, 128, g),
}


@pytest.mark.parametrize('name', sorted(RANDOM_OPS))
@pytest.mark.parametrize('dtype', [torch.uint8, torch.float32])
def test_ops_shape_dtype_range_and_reproducibility(name, dtype):
    x = _imgs(16, dtype=dtype)
    out = RANDOM_OPS[name](x, _gen(1))
    shape = (16, 3, 24, 20) if name == 'crop_flip' else tuple(x.shape)
    assert tuple(out.shape) == shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= 255
    # the same generator state gives the same batch; another seed another one
    assert torch.equal(out, RANDOM_OPS[name](x, _gen(1)))
    assert not torch.equal(out, RANDOM_OPS[name](x, _gen(2)))
    # per-sample randomness: samples of one identical image do not all come out the same
    same = x[:1].repeat(16, 1, 1, 1)
    o = RANDOM_OPS[name](same, _gen(3)).float()
    assert (o - o[:1]).abs().flatten(1).amax(1).gt(0).any()


def test_per_sample_parameters_differ_and_replay():
    boxes = ops.sample_crop_boxes(64, 32, 32, (0.2, 1.), generator=_gen(0))
    assert boxes.shape == (64, 4) and boxes.dtype == torch.long
    assert torch.equal(boxes, ops.sample_crop_boxes(64, 32, 32, (0.2, 1.), generator=_gen(0)))
    assert len({tuple(b) for b in boxes.tolist()}) > 50
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and \
        (left + w <= 32).all() and (h > 0).all() and (w > 0).all()
    p = ops.sample_color_jitter(64, .4, .4, .4, .1, prob=.8, generator=_gen(0))
    q = ops.sample_color_jitter(64, .4, .4, .4, .1, prob=.8, generator=_gen(0))
    for key in ('brightness', 'contrast', 'saturation', 'hue'):
        assert torch.equal(p[key], q[key]) and p[key].unique().numel() == 64
    assert p['brightness'].min() >= 0.6 and p['brightness'].max() <= 1.4
    assert p['hue'].abs().max() <= 0.1
    assert len({tuple(o) for o in p['order'].tolist()}) > 10  # per-sample op orders
    assert sorted(p['order'][0].tolist()) == [0, 1, 2, 3]
    assert 0 < p['apply'].float().mean() < 1


# ----------------------------------------------------------------------- exact behaviour
def test_full_crop_is_identity_and_box_crops_match_pillow():
    import mmcv
    x = _imgs(6)
    same = ops.random_resized_crop(x, None, (1., 1.), (1., 1.), generator=_gen(0))
    assert torch.equal(same, x)
    # a fixed box upscaled to 32x32 = PIL's bilinear resize of the crop (uint8 rounding)
    boxes = torch.tensor([[3, 5, 16, 20]] * 6)
    out = ops.resized_crop(x, boxes, (32, 32))
    for i in range(6):
        crop = x[i, :, 3:19, 5:25].permute(1, 2, 0).numpy()
        ref = mmcv.imresize(crop, (32, 32), backend='pillow')
        assert np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - ref).max() <= 1
    # the fused flip mirrors the crop
    flipped = ops.resized_crop(x, boxes, (32, 32), flip=torch.tensor([True] * 6))
    assert torch.equal(flipped, out.flip(-1))


def test_flip_grayscale_solarize_exact():
    import mmcv
    x = _imgs(8)
    mask = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    f = ops.hflip(x, mask)
    assert torch.equal(f[mask], x[mask].flip(-1)) and torch.equal(f[~mask], x[~mask])
    g = ops.grayscale(x.float(), mask)
    lum = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        assert torch.allclose(g[mask][:, c], lum[mask].float(), atol=1e-3)
    assert torch.equal(g[~mask], x[~mask].float())
    s = ops.solarize(x, mask, thr=128)
    for i in range(8):
        ref = mmcv.solarize(x[i].numpy(), thr=128) if mask[i] else x[i].numpy()
        assert np.array_equal(s[i].numpy(), ref)


def test_colour_ops_match_pillow_enhancers():
    from PIL import Image, ImageEnhance
    img = structured_image()
    x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(3, 1, 1, 1)
    factors = torch.tensor([0.6, 1.0, 1.4])
    for op, enh in ((ops.adjust_brightness, ImageEnhance.Brightness),
                    (ops.adjust_contrast, ImageEnhance.Contrast),
                    (ops.adjust_saturation, ImageEnhance.Color)):
        out = op(x, factors)
        for i, f in enumerate(factors.tolist()):
            ref = np.asarray(enh(Image.fromarray(img)).enhance(f)).astype(int)
            assert np.abs(out[i].permute(1, 2, 0).numpy().astype(int) - ref).max() <= 2, op


def test_hue_rotation_and_hsv_round_trip():
    x = _imgs(8).float()
    assert torch.allclose(ops.hsv_to_rgb(ops.rgb_to_hsv(x / 255)) * 255, x, atol=1e-3)
    assert torch.allclose(ops.adjust_hue(x, torch.zeros(8)), x, atol=1e-3)
    red = torch.tensor([255., 0, 0]).view(1, 3, 1, 1).expand(3, 3, 2, 2)
    out = ops.adjust_hue(red, torch.tensor([1 / 3, 2 / 3, 0.5]))
    expect = torch.tensor([[0., 255, 0], [0, 0, 255], [0, 255, 255]])
    assert torch.allclose(out[:, :, 0, 0], expect, atol=1e-3)
    # a hue shift keeps value (max channel) and saturation
    hsv_in, hsv_out = ops.rgb_to_hsv(x / 255), ops.rgb_to_hsv(ops.adjust_hue(x, torch.full(
        (8, ), 0.23)) / 255)
    assert torch.allclose(hsv_in[:, 1:], hsv_out[:, 1:], atol=1e-4)


def test_gaussian_blur_per_sample_sigma():
    x = _imgs(4).float()
    sigma = torch.tensor([0.5, 1.0, 1.5, 2.0])
    out = ops.gaussian_blur(x, sigma, kernel_size=13)
    for i in range(4):  # batched == one sample at a time == a dense 2-D convolution
        single = ops.gaussian_blur(x[i:i + 1], sigma[i:i + 1], kernel_size=13)
        assert torch.allclose(out[i:i + 1], single, atol=1e-3)
        k = ops.gaussian_kernels(sigma[i:i + 1], 13)[0]
        pad = F.pad(x[i:i + 1], (6, 6, 6, 6), mode='replicate')
        dense = F.conv2d(pad, torch.outer(k, k).expand(3, 1, 13, 13), groups=3)
        assert torch.allclose(out[i:i + 1], dense, atol=1e-2)
    # stronger blur, less high-frequency energy; constants are unchanged
    energy = (out[:, :, :, 1:] - out[:, :, :, :-1]).abs().mean((1, 2, 3))
    assert (energy[1:] < energy[:-1]).all()
    flat = torch.full((2, 3, 32, 32), 77.)
    assert torch.allclose(ops.gaussian_blur(flat, torch.tensor([1., 2.]), 13), flat)
    masked = ops.gaussian_blur(x, sigma, 13, mask=torch.tensor([True, False, True, False]))
    assert torch.equal(masked[1], x[1]) and torch.allclose(masked[0], out[0])


# --------------------------------------------------------- device vs CPU-transform path
def _cpu_views(pipe_cfg, img, n, seed=0):
    from mmcv.transforms import Compose
    np.random.seed(seed)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        pipe = Compose([TRANSFORMS.build(copy.deepcopy(c)) for c in pipe_cfg])
    return np.stack([pipe(dict(img=img.copy()))['img'] for _ in range(n)]).astype(float)


def _dev_views(pipe_cfg, img, n, seed=0):
    x = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(n, 1, 1, 1)
    out = build_view_pipeline(pipe_cfg)(x, _gen(seed))
    return out.permute(0, 2, 3, 1).numpy().astype(float)


def _view_stats(v):
    return dict(mean=v.mean((1, 2, 3)), colour=v.std(-1).mean((1, 2)),
                contrast=v.mean(-1).std((1, 2)), gray=v.std(-1).max((1, 2)) == 0)


def test_crop_parameters_match_mmpretrain_distribution():
    from mmpretrain.datasets.transforms.processing import RandomResizedCrop
    np.random.seed(0)
    rrc = RandomResizedCrop(scale=32, crop_ratio_range=(0.2, 1.), backend='pillow')
    img = np.zeros((32, 32, 3), np.uint8)
    cpu = np.array([rrc.rand_crop_params(img) for _ in range(5000)], float)
    dev = ops.sample_crop_boxes(5000, 32, 32, (0.2, 1.), generator=_gen(0)).numpy().astype(float)
    for a, b in ((cpu[:, 2] * cpu[:, 3], dev[:, 2] * dev[:, 3]),  # area
                 (cpu[:, 3] / cpu[:, 2], dev[:, 3] / dev[:, 2]),  # aspect ratio
                 (cpu[:, 0], dev[:, 0]), (cpu[:, 1], dev[:, 1])):  # offsets
        assert ks_stat(a, b) < 0.04
    assert abs((dev[:, 2] * dev[:, 3]).mean() / 1024 - 0.55) < 0.01


@pytest.mark.parametrize('jitter,stat', [(dict(brightness=0.4), 'mean'),
                                         (dict(contrast=0.4), 'contrast'),
                                         (dict(saturation=0.4), 'colour')])
def test_jitter_effect_distribution_matches_cpu(jitter, stat):
    """What each jitter changes is distributed alike on both paths (fixed seeds)."""
    img = structured_image()
    cfg = [dict(type='ColorJitter', **jitter)]
    c = _view_stats(_cpu_views(cfg, img, 400))[stat]
    d = _view_stats(_dev_views(cfg, img, 400))[stat]
    assert ks_stat(c, d) < 0.12
    assert abs(c.mean() - d.mean()) < 0.03 * c.mean()
    assert abs(c.std() - d.std()) < 0.15 * c.std()


def test_full_cifar_recipe_matches_cpu_pipeline():
    img = structured_image(1)
    cfg = Config.fromfile(SSL_BASE).view_pipeline
    c = _view_stats(_cpu_views(cfg, img, 400))
    d = _view_stats(_dev_views(cfg, img, 400))
    for key in ('mean', 'colour', 'contrast'):
        assert ks_stat(c[key], d[key]) < 0.12, key
    assert abs(c['gray'].mean() - 0.2) < 0.06 and abs(d['gray'].mean() - 0.2) < 0.06


def test_cifar10_ssl_preset_is_the_cpu_recipe():
    cpu = Config.fromfile(SSL_BASE).view_pipeline
    n, (dev, ) = resolve_views('cifar10_ssl', None)
    assert n == [2] and [t['type'] for t in dev] == \
        ['RandomResizedCrop', 'RandomFlip', 'ColorJitter', 'RandomGrayscale']
    assert tuple(dev[0]['crop_ratio_range']) == tuple(cpu[0]['crop_ratio_range'])
    assert dev[1]['prob'] == cpu[1]['prob']
    jit = cpu[2]['transforms'][0]
    assert dev[2]['prob'] == cpu[2]['prob']
    assert all(dev[2][k] == jit[k] for k in ('brightness', 'contrast', 'saturation', 'hue'))
    assert dev[3]['prob'] == cpu[3]['prob']
    assert build_view_pipeline(cpu[1:]).transforms[1].prob == cpu[2]['prob']  # RandomApply


# ------------------------------------------------------------------------ preprocessor
def _packed_batch(root, n=8):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dict(type='BackdoorCIFAR10', data_root=root, check_md5=False,
                                 split='train', indices=n, pipeline=[dict(type='PackInputs')]))
    return default_collate([ds[i] for i in range(n)])


def test_preprocessor_output_structure_and_seeding(fake_cifar):
    root, _ = fake_cifar
    batch = _packed_batch(root)
    assert batch['inputs'].dtype == torch.uint8 and batch['inputs'].shape == (8, 3, 32, 32)
    dp = DeviceMultiViewPreprocessor('cifar10_ssl', mean=MEAN, std=STD, seed=5)
    hub = MessageHub.get_current_instance()
    hub.update_info('iter', 1000)
    out = dp(batch, training=True)
    assert isinstance(out['inputs'], list) and len(out['inputs']) == 2
    assert all(v.shape == (8, 3, 32, 32) and v.dtype == torch.float32 for v in out['inputs'])
    assert len(out['data_samples']) == 8
    assert not torch.equal(out['inputs'][0], out['inputs'][1])
    assert abs(out['inputs'][0].mean()) < 1.5  # normalized
    # the same (seed, iter) replays the views; the next iteration differs
    dp2 = DeviceMultiViewPreprocessor('cifar10_ssl', mean=MEAN, std=STD, seed=5)
    again = dp2(batch, training=True)
    assert all(torch.equal(a, b) for a, b in zip(out['inputs'], again['inputs']))
    hub.update_info('iter', 1001)
    nxt = dp2(batch, training=True)
    assert not torch.equal(nxt['inputs'][0], out['inputs'][0])
    # a stale hub iteration (no runner advancing it) still gives fresh views
    assert not torch.equal(dp2(batch, training=True)['inputs'][0], nxt['inputs'][0])
    # eval mode: the normalized images; CPU-made views: normalized as SelfSupDataPreprocessor
    ev = dp(batch, training=False)['inputs']
    expect = (batch['inputs'].float() - torch.tensor(MEAN).view(1, 3, 1, 1)) / \
        torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.allclose(ev, expect, atol=1e-5)
    ref = MODELS.build(dict(type='SelfSupDataPreprocessor', mean=MEAN, std=STD))
    views = dict(inputs=[batch['inputs'], batch['inputs'].flip(-1)],
                 data_samples=batch['data_samples'])
    assert all(torch.allclose(a, b) for a, b in zip(dp(views, True)['inputs'],
                                                     ref(views, True)['inputs']))


def test_preprocessor_presets_and_multiview_arguments():
    x = dict(inputs=_imgs(4), data_samples=[None] * 4)
    byol = DeviceMultiViewPreprocessor('byol', seed=0)
    assert byol.num_views == [1, 1] and len(byol.pipelines) == 2
    assert len(byol(x, True)['inputs']) == 2
    three = DeviceMultiViewPreprocessor([dict(type='RandomFlip', prob=0.5)], num_views=3, seed=0)
    assert len(three(x, True)['inputs']) == 3
    cl = DeviceMultiViewPreprocessor('cifar10_ssl', seed=0, channels_last=True)
    assert cl(x, True)['inputs'][0].is_contiguous(memory_format=torch.channels_last)
    for bad in (dict(transforms='nope'), dict(transforms=[[], []], num_views=2),
                dict(transforms=[dict(type='Rotate')])):
        with pytest.raises(ValueError):
            DeviceMultiViewPreprocessor(**bad)
    assert set(PRESETS) >= {'cifar10_ssl', 'simclr', 'byol', 'mocov2'}


def _simclr_w8(dp_cfg=None):
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e-devaug_cifar10.py'))
    model = cfg.model.to_dict()
    model['backbone'].update(stem_channels=8, base_channels=8)
    model['neck'].update(in_channels=64, hid_channels=64, out_channels=32)
    model['data_preprocessor'] = dp_cfg or cfg.data_preprocessor.to_dict()
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(model)


@pytest.mark.parametrize('amp,channels_last', [(False, False), (True, True)])
def test_simclr_w8_train_step_on_fake_data(fake_cifar, amp, channels_last):
    from mmengine.optim import OptimWrapper
    root, _ = fake_cifar
    torch.manual_seed(0)
    model = _simclr_w8()
    assert isinstance(model.data_preprocessor, DeviceMultiViewPreprocessor)
    if channels_last:
        to_channels_last(model)
        assert model.data_preprocessor.channels_last
        assert model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    model.train()
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    ow = AutocastOptimWrapper(optimizer=optim) if amp else OptimWrapper(optimizer=optim)
    before = model.backbone.conv1.weight.detach().clone()
    batch = _packed_batch(root)
    for _ in range(2):
        log = model.train_step(batch, ow)
        assert torch.isfinite(log['loss'])
    assert not torch.allclose(model.backbone.conv1.weight, before)


@pytest.mark.parametrize('native', [True, False])
def test_autocast_wrapper_bf16_where_native_and_rejects_fp16(monkeypatch, native):
    from bmaiu_plugin.engine import perf
    monkeypatch.setattr(perf, 'native_bf16', lambda device: native)
    model = torch.nn.Linear(4, 4)
    ow = AutocastOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with ow.optim_context(model):
        out = model(torch.randn(2, 4))
    assert out.dtype == (torch.bfloat16 if native else torch.float32)
    assert ow.autocast is native
    forced = AutocastOptimWrapper(native_only=False,
                                  optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    with forced.optim_context(model):
        assert model(torch.randn(2, 4)).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        AutocastOptimWrapper(dtype='float16',
                             optimizer=torch.optim.SGD(model.parameters(), lr=0.1))


def test_native_bf16_reads_the_device(monkeypatch):
    from bmaiu_plugin.engine.perf import native_bf16
    monkeypatch.setattr(torch.cpu, '_is_avx512_bf16_supported', lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: False, raising=False)
    assert native_bf16('cpu') is False
    monkeypatch.setattr(torch.cpu, '_is_amx_tile_supported', lambda: True, raising=False)
    assert native_bf16('cpu') is True
    assert native_bf16('mps') is False


def test_compile_modules_hook_keeps_state_dict_keys():
    from types import SimpleNamespace
    torch.manual_seed(0)
    model = _simclr_w8()
    model.eval()
    keys = list(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    ref = model.backbone(x)[0]
    runner = SimpleNamespace(model=model, logger=SimpleNamespace(info=lambda *_: None))
    CompileModulesHook(modules=('backbone', 'neck', 'missing'), backend='eager').before_run(
        runner)
    assert model.backbone._compiled_call_impl is not None
    assert list(model.state_dict()) == keys  # checkpoints unchanged
    assert torch.allclose(model.backbone(x)[0], ref, atol=1e-5)


# ------------------------------------------------------------------------- configs
@pytest.mark.parametrize('path', DEVAUG, ids=[osp.basename(p) for p in DEVAUG])
def test_devaug_configs_train_a_few_iterations(path, fake_cifar, tmp_path):
    from mmengine.runner import Runner

    from bmaiu_plugin.apis import finalize_config
    root, _ = fake_cifar
    cfg = finalize_config(Config.fromfile(path))
    cpu_twin = Config.fromfile(path.replace('-devaug', '').replace('-200e', '-500e'))
    assert cfg.data_preprocessor.type == 'DeviceMultiViewPreprocessor'
    assert cfg.train_dataloader.dataset.pipeline == [dict(type='PackInputs')]
    assert cfg.model == cpu_twin.model  # only where the views are made differs
    cfg.work_dir = str(tmp_path)
    cfg.train_dataloader.dataset.update(data_root=root, indices=16)
    cfg.train_dataloader.update(batch_size=8, num_workers=0, persistent_workers=False)
    cfg.model.backbone.update(stem_channels=8, base_channels=8)
    cfg.model.neck.in_channels = 64
    cfg.train_cfg.max_epochs = 1
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = None
    cfg.log_level = 'WARNING'
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    assert np.isfinite(runner.message_hub.get_scalar('train/loss').current())


# ------------------------------------------------------------------------ benchmark
def test_benchmark_script_runs_and_writes_json(fake_cifar, tmp_path):
    root, _ = fake_cifar
    spec = importlib.util.spec_from_file_location(
        'bmaiu_benchmark', osp.join(REPO_ROOT, 'tools', 'benchmark.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / 'bench.json'
    rc = bench.main(['--width', '4', '--batch-size', '8', '--iters', '1', '--warmup', '0',
                     '--probe-train', '32', '--probe-test', '16', '--data-root', root,
                     '--peak-tflops', '1', '--out', str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    got = {(r['task'], r['path']) for r in res['rows']}
    assert got == {('simclr', 'device'), ('simclr', 'cpu'), ('simclr', 'bare'),
                   ('simclr-views', 'device'), ('simclr-views', 'cpu'), ('simclr-views', 'bare'),
                   ('bmaiu-implant', 'device'), ('bmaiu-implant', 'bare'),
                   ('bmaiu-unlearn', 'device'), ('bmaiu-unlearn', 'bare'),
                   ('badencoder', 'device'), ('badencoder', 'bare'),
                   ('probe', 'device'), ('probe', 'bare')}
    for r in res['rows']:
        assert r['images_per_s'] > 0 and r['images_per_cpu_s'] > 0
        assert (r['gflop_per_image'] > 0) == (r['task'] != 'simclr-views')  # views: no FLOPs
        assert r['pct_peak'] == pytest.approx(100 * r['tflops'])  # against the 1 TFLOP/s peak
    assert res['meta']['batch_size'] == 8 and res['meta']['data'] == root


def test_speed_switch_flags_set_the_wrapper_and_the_hook():
    """``bf16_autocast`` / ``channels_last`` (what a pipeline passes with --cfg-options) turn
    into the optim wrapper and one ChannelsLastHook; a bad value is one error up front."""
    from bmaiu_plugin.apis import apply_speed_switches
    from bmaiu_plugin.utils.errors import ConfigValueError
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=1.)),
                      custom_hooks=[dict(type='PrepareModelHook')],
                      bf16_autocast=True, channels_last=True))
    apply_speed_switches(cfg)
    apply_speed_switches(cfg)  # idempotent
    assert cfg.optim_wrapper.type == 'AutocastOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16' and cfg.optim_wrapper.optimizer.lr == 1.
    assert [h['type'] for h in cfg.custom_hooks] == ['PrepareModelHook', 'ChannelsLastHook']
    off = Config(dict(optim_wrapper=dict(type='OptimWrapper'), bf16_autocast=False))
    apply_speed_switches(off)
    assert off.optim_wrapper.type == 'OptimWrapper' and 'custom_hooks' not in off
    for bad in (dict(channels_last='yes'),
                dict(bf16_autocast=True, optim_wrapper=dict(type='AmpOptimWrapper'))):
        with pytest.raises(ConfigValueError, match='bf16_autocast|channels_last'):
            apply_speed_switches(Config(bad))
