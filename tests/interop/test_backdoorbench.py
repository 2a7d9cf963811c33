"""The BackdoorBench bridge: round trip, schema, torchvision key mapping, safety, bad records."""
import importlib.util
import io
import os
import os.path as osp
import pickle
import pickletools
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.models.features import PixelNormalizer, pool_features
from bmaiu_plugin.models.features import CIFAR10_MEAN, CIFAR10_STD
from bmaiu_plugin.interop.backdoorbench import (BB_NORMALIZATION,
                                                REQUIRED_KEYS, RecordError,
                                                encoder_to_torchvision, export_attack_record,
                                                import_attack_record, load_cifar10, load_record,
                                                rescale_stem, save_record,
                                                torchvision_to_encoder, write_encoder)
from bmaiu_plugin.interop.bb_models import encoder_to_bb
from bmaiu_plugin.interop.bb_procedure import bb_generate_cls_model
from bmaiu_plugin.triggers import build_trigger
from bmaiu_plugin.utils.checkpoint import load_encoder_weights
from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError, UnsafeCheckpointError
from conftest import REPO_ROOT, build_model, randomize_bn, write_fake_cifar

REPO = REPO_ROOT
W8 = dict(type='ResNet_CIFAR', depth=18, stem_channels=8, base_channels=8,
          norm_cfg=dict(type='BN'))
PREACT = dict(type='PreActResNet', depth=18)  # BackdoorBench's preactresnet18
BB_CIFAR10_PIXEL = ([v * 255 for v in BB_NORMALIZATION['cifar10'][0]],
                    [v * 255 for v in BB_NORMALIZATION['cifar10'][1]])


def _tool():
    spec = importlib.util.spec_from_file_location('bb_tool', osp.join(REPO, 'tools',
                                                                      'backdoorbench.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _pickle_globals(path):
    """``module name`` of every GLOBAL / STACK_GLOBAL in a torch file's pickle."""
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith('data.pkl')))
    out, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == 'GLOBAL':
            out.add(arg)
        elif op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE'):
            strings.append(arg)
        elif op.name == 'STACK_GLOBAL':
            out.add(f'{strings[-2]} {strings[-1]}')
    return out, data


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A PreAct ResNet-18 encoder exported with the BadEncoder trigger on fake CIFAR-10."""
    base = tmp_path_factory.mktemp('bb')
    data_root = str(base / 'cifar')
    write_fake_cifar(data_root)
    net = randomize_bn(build_model(PREACT))
    enc = str(base / 'enc.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in net.state_dict().items()}}, enc)
    summary = export_attack_record(enc, str(base / 'out'), 'badenc', backbone=PREACT,
                                   attack='badencoder', data_root=data_root,
                                   probe_cfg=dict(epochs=3))
    return dict(summary=summary, enc=enc, data_root=data_root, net=net, base=base)


# ------------------------------------------------------------------------------ round trip
def test_round_trip_identical_tensors_and_predictions(exported):
    s, net = exported['summary'], exported['net']
    record = load_record(s['record'])
    imp = import_attack_record(s['record'], data_root=exported['data_root'])
    # the imported classifier holds exactly the record's tensors
    got = encoder_to_bb('preactresnet18', imp.classifier.backbone.state_dict(),
                        imp.classifier.fc.weight, imp.classifier.fc.bias)
    assert list(got) == list(record['model'])
    for k, v in record['model'].items():
        assert torch.equal(got[k], v), k
    # ... which are the encoder's own, the stem re-expressed for BackdoorBench's normalization
    orig = net.state_dict()
    for k, v in orig.items():
        if k != 'conv1.weight':
            assert torch.equal(record['model'][k], v), k
    src = ([v / 255 for v in CIFAR10_MEAN], [v / 255 for v in CIFAR10_STD])
    assert torch.equal(record['model']['conv1.weight'],
                       rescale_stem(orig['conv1.weight'], src, BB_NORMALIZATION['cifar10']))
    assert imp.backbone_cfg == PREACT
    assert imp.normalization[1] == pytest.approx(BB_CIFAR10_PIXEL[1])

    # same predictions as the original encoder + probe under the plugin's normalization
    fc = imp.classifier.fc
    norm = PixelNormalizer(CIFAR10_MEAN, CIFAR10_STD)
    with torch.no_grad():
        ref = fc(pool_features(net(norm(imp.bd_images))))
    logits = imp.classifier.logits(imp.bd_images)
    assert torch.allclose(logits, ref, atol=1e-4)
    assert torch.equal(logits.argmax(1), ref.argmax(1))
    assert torch.equal(imp.bd_predictions, logits.argmax(1))
    # and the same metrics as measured at export
    for k in ('BA', 'ASR', 'PA'):
        assert imp.metrics[k] == pytest.approx(s['metrics'][k], abs=1e-9), k
    assert record['bmaiu']['metrics'] == s['metrics']

    # the PNGs are the trigger applied to the test images, bit for bit
    test_imgs, test_labels = load_cifar10(exported['data_root'], 'test')
    trig = build_trigger(dict(type='PatchTrigger', size=10, pattern='white', position=(21, 21)))
    expect = trig(test_imgs[imp.bd_indices])
    assert torch.equal(imp.bd_images, expect)
    assert torch.equal(imp.bd_original_labels, test_labels[imp.bd_indices])

    # the encoder written back for the plugin equals the original one
    out = str(exported['base'] / 'imported_enc.pth')
    write_encoder(imp, out)
    back = build_model(PREACT)
    load_encoder_weights(back, out)
    for k, v in back.state_dict().items():
        assert torch.allclose(v.float(), orig[k].float(), rtol=1e-6, atol=1e-7), k
    with pytest.raises(ConfigValueError, match='exists'):
        write_encoder(imp, out)


# ------------------------------------------------------------------------------ schema
def test_record_schema(exported):
    s = exported['summary']
    record = load_record(s['record'])
    assert set(REQUIRED_KEYS) <= set(record)
    assert record['model_name'] == 'preactresnet18' and record['num_classes'] == 10
    assert record['clean_data'] == 'cifar10' and record['img_size'] == [32, 32, 3]
    assert 'data' in record['data_path'] and record['bd_train'] is None
    assert all(isinstance(v, torch.Tensor) for v in record['model'].values())
    # BackdoorBench's names in its order (it maps by position)
    assert list(record['model']) == list(bb_generate_cls_model('preactresnet18').state_dict())
    bd = record['bd_test']
    cont = bd['bd_data_container']
    assert cont['save_file_format'] == '.png' and cont['save_folder_path'] == \
        'record/badenc/bd_test_dataset' == bd['save_folder_path']
    assert isinstance(bd['getitem_all'], bool) and isinstance(bd['getitem_all_switch'], bool)
    idx, ind = bd['original_index_array'], bd['poison_indicator']
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64
    assert isinstance(ind, np.ndarray) and len(ind) == 100 and set(np.unique(ind)) <= {0, 1}
    _, labels = load_cifar10(exported['data_root'], 'test')
    assert np.array_equal(np.flatnonzero(ind), idx)
    assert np.array_equal(idx, np.flatnonzero(labels.numpy() != 9))  # target class excluded
    assert sorted(cont['data_dict']) == idx.tolist()
    for i in idx.tolist():
        item = cont['data_dict'][i]
        assert item['other_info'] == [9, int(labels[i])]
        assert item['path'] == f'record/badenc/bd_test_dataset/{int(labels[i])}/{i}.png'
        assert osp.isfile(osp.join(s['root'], item['path']))
    meta = record['bmaiu']
    assert meta['attack']['name'] == 'badencoder' and meta['attack']['target'] == 9
    assert meta['backbone'] == PREACT and meta['stem'] == 'cifar'
    assert set(meta['metrics']) == {'BA', 'ASR', 'PA'}


def test_numpy_arrays_readable_by_numpy1(exported):
    """Arrays are pickled as numpy 1.x writes them (numpy.core.*), never numpy._core.*."""
    globs, data = _pickle_globals(exported['summary']['record'])
    assert 'numpy.core.multiarray _reconstruct' in globs
    assert not any(g.startswith('numpy._core') for g in globs), globs
    assert {g.split()[0] for g in globs} <= {'numpy', 'numpy.core.multiarray', 'collections',
                                             'torch', 'torch._utils', '_codecs'}, globs

    class Numpy1Unpickler(pickle.Unpickler):
        """numpy < 1.26.1 has no numpy._core; tensors are skipped."""

        def find_class(self, module, name):
            if module.startswith('numpy._core'):
                raise ModuleNotFoundError(f"No module named '{module}'")
            if module.startswith('torch'):
                return lambda *a, **k: None
            return super().find_class(module, name)

        def persistent_load(self, pid):
            return None

    rec = Numpy1Unpickler(io.BytesIO(data)).load()
    assert rec['bd_test']['original_index_array'].dtype == np.int64


# ------------------------------------------------------------------------------ key mapping
def test_key_mapping_width8_cifar_resnet_to_torchvision_names():
    net = build_model(W8)
    fc = nn.Linear(64, 10)
    mapped = encoder_to_torchvision(net.state_dict(), fc.weight, fc.bias)
    tv = torchvision.models.resnet18(num_classes=10).state_dict()
    assert list(mapped) == list(tv)
    for k, v in mapped.items():
        t = tv[k]
        assert v.dim() == t.dim(), k
        if k == 'conv1.weight':
            assert tuple(v.shape) == (8, 3, 3, 3) and tuple(t.shape) == (64, 3, 7, 7)
        elif k == 'fc.weight':
            assert tuple(v.shape) == (10, 64) and tuple(t.shape) == (10, 512)
        elif k == 'fc.bias':
            assert v.shape == t.shape == (10,)
        elif v.dim():  # every channel count is torchvision's / 8
            assert v.shape[0] * 8 == t.shape[0], k
            if v.dim() == 4:
                assert v.shape[1] * 8 == t.shape[1] and v.shape[2:] == t.shape[2:], k
    back, w, b = torchvision_to_encoder(mapped)
    assert list(back) == list(net.state_dict()) and torch.equal(w, fc.weight.detach())
    # DataParallel prefixes are accepted on import
    back2, _, _ = torchvision_to_encoder({'module.' + k: v for k, v in mapped.items()})
    assert list(back2) == list(back)


def test_key_mapping_numerics_against_torchvision():
    """Our ResNet_CIFAR-18 + fc runs exactly as torchvision's resnet18 with a CIFAR stem; the
    ImageNet-stem ResNet-18 loads into stock torchvision resnet18 and back."""
    x = torch.rand(2, 3, 32, 32)
    for cfg, patch in ((dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='BN')), True),
                       (dict(type='ResNet', depth=18, norm_cfg=dict(type='BN')), False)):
        net = randomize_bn(build_model(cfg), seed=1)
        fc = nn.Linear(512, 10)
        tv = torchvision.models.resnet18(num_classes=10)
        if patch:
            tv.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            tv.maxpool = nn.Identity()
        tv.load_state_dict(encoder_to_torchvision(net.state_dict(), fc.weight, fc.bias),
                           strict=True)
        tv.eval()
        with torch.no_grad():
            assert torch.allclose(tv(x), fc(pool_features(net(x))), atol=1e-5)
        back, w, b = torchvision_to_encoder(tv.state_dict())
        again = build_model(cfg)
        again.load_state_dict(back, strict=True)
        assert all(torch.equal(again.state_dict()[k], v) for k, v in net.state_dict().items())


def _foreign_record(tmp_path, n=4):
    """A record as BackdoorBench writes it: torchvision resnet18, plain torch.save, no
    plugin metadata; numpy 2 pickles its arrays as numpy._core.*."""
    from PIL import Image
    tv = randomize_bn(torchvision.models.resnet18(num_classes=10), seed=2)
    root = tmp_path / 'bbroot'
    rng = np.random.default_rng(0)
    imgs, data_dict = [], {}
    for i in range(n):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        rel = f'record/foreign/bd_test_dataset/{i % 3}/{i}.png'
        os.makedirs(osp.dirname(root / rel), exist_ok=True)
        Image.fromarray(img).save(root / rel)
        imgs.append(img)
        data_dict[i] = {'path': rel, 'other_info': [0, i % 3 + 1]}
    record = {
        'model_name': 'resnet18', 'num_classes': 10, 'model': tv.state_dict(),
        'data_path': './data/cifar10', 'img_size': [32, 32, 3], 'clean_data': 'cifar10',
        'bd_train': None,
        'bd_test': {'bd_data_container': {'save_folder_path': 'record/foreign/bd_test_dataset',
                                          'data_dict': data_dict, 'save_file_format': '.png'},
                    'getitem_all': True, 'getitem_all_switch': False,
                    'original_index_array': np.arange(n),
                    'poison_indicator': np.ones(n, dtype=np.int64),
                    'save_folder_path': 'record/foreign/bd_test_dataset'}}
    path = root / 'record' / 'foreign' / 'attack_result.pt'
    torch.save(record, str(path))
    return str(path), tv, torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)


def test_import_foreign_torchvision_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./data/cifar10 here: BA is skipped with a note
    path, tv, imgs = _foreign_record(tmp_path)
    imp = import_attack_record(path)
    assert imp.backbone_cfg['type'] == 'ResNet' and imp.backbone_cfg['depth'] == 18
    mean, std = BB_NORMALIZATION['cifar10']
    x = (imgs.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / \
        torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = tv(x)
    assert torch.allclose(imp.classifier.logits(imgs), ref, atol=1e-4)
    assert torch.equal(imp.bd_predictions, ref.argmax(1))
    assert imp.metrics['num_bd_test'] == 4 and 'BA' not in imp.metrics
    assert any('clean CIFAR-10 not found' in n for n in imp.notes)


# ------------------------------------------------------------------------------ safety
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'echo pwned > {self.marker}',))


def test_malicious_record_is_refused(tmp_path):
    path, _, _ = _foreign_record(tmp_path)
    rec = torch.load(path, weights_only=False)
    marker = tmp_path / 'PWNED'
    rec['bd_train'] = {'payload': _Evil(str(marker))}
    torch.save(rec, path)
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        import_attack_record(path)
    assert not marker.exists()
    # the tool (also `mim run bmaiu_plugin backdoorbench`): one error line, exit status 2
    r = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'backdoorbench.py'), 'import',
                        path], capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
                       env={**os.environ, 'PYTHONWARNINGS': 'ignore', 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 2, r.stdout[-1500:] + r.stderr[-1500:]
    errors = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith('error:')]
    assert len(errors) == 1 and 'refused' in errors[0], r.stderr[-1500:]
    assert 'Traceback' not in r.stderr and not marker.exists()


# ------------------------------------------------------------------------------ bad records
def _set(path_keys, value):
    def edit(rec):
        node = rec
        for k in path_keys[:-1]:
            node = node[k]
        node[path_keys[-1]] = value
        return rec
    return edit


def _drop(key):
    def edit(rec):
        del rec[key]
        return rec
    return edit


DD = ('bd_test', 'bd_data_container', 'data_dict')
BAD_RECORDS = [
    ('not-a-dict', lambda rec: [rec], 'is not a BackdoorBench attack record'),
    ('no-model', _drop('model'), "missing key(s) model"),
    ('model-not-tensors', _set(('model', 'fc.bias'), [0.] * 10),
     "'model' must map parameter names to tensors"),
    ('num-classes', _set(('num_classes',), 0), "'num_classes' must be a positive integer"),
    ('img-size', _set(('img_size',), [32, 32]), "'img_size' must be [height, width, channels]"),
    ('bd-test-type', _set(('bd_test',), 'x'), "'bd_test' must be None or a dict"),
    ('no-path', _set(DD + (1,), {'other_info': [0, 1]}), "'path' string"),
    ('other-info', _set(DD + (1,), {'path': 'a.png', 'other_info': [0]}),
     "'other_info' must be [bd_label, original_label]"),
    ('index-outside-split', _set(('bd_test', 'original_index_array'), np.arange(5)),
     "indices outside 'poison_indicator'"),
    ('index-without-entry', lambda rec: (rec['bd_test']['bd_data_container']['data_dict']
                                         .pop(3), rec)[1], 'has no entry for 1 poisoned'),
    ('indicator', _set(('bd_test', 'poison_indicator'), np.full(4, 2)), 'only 0 and 1'),
    ('classes-vs-fc', _set(('num_classes',), 43), 'fc.weight has 10 rows'),
    ('not-resnet', lambda rec: {**rec, 'model': {'linear.weight': torch.zeros(10, 4),
                                                 'linear.bias': torch.zeros(10)}},
     'no fc.weight / fc.bias'),
    ('escaping-path', _set(DD + (1,), {'path': '../../../etc/passwd', 'other_info': [0, 2]}),
     'points outside the record root'),
    ('unknown-model', _set(('model_name',), 'vgg16'), "'vgg16' cannot be imported"),
    ('name-vs-keys', _set(('model_name',), 'preactresnet18'), 'no linear.weight / linear.bias'),
    ('meta-backbone', _set(('bmaiu',), {'backbone': {'type': 'VisionTransformer'}}),
     "backbone type 'VisionTransformer' is not PreActResNet"),
]


@pytest.mark.parametrize('edit,msg', [c[1:] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS])
def test_malformed_record_one_clear_error(tmp_path, edit, msg):
    path, _, _ = _foreign_record(tmp_path)
    rec = edit(torch.load(path, weights_only=False))
    torch.save(rec, path)
    with pytest.raises(RecordError) as e:
        import_attack_record(path)
    assert msg in str(e.value) and len(str(e.value).splitlines()) == 1


def test_unreadable_and_missing_records(tmp_path):
    bad = tmp_path / 'attack_result.pt'
    bad.write_bytes(b'definitely not a torch file')
    with pytest.raises(CheckpointError, match='not a readable BackdoorBench record'):
        load_record(str(bad))
    with pytest.raises(RecordError, match='record not found'):
        load_record(str(tmp_path / 'nothing'))
    with pytest.raises(RecordError, match="missing key"):
        save_record({'model': {}}, str(tmp_path / 'x.pt'))


def test_rescale_stem_refuses_other_mean():
    w = torch.randn(4, 3, 3, 3)
    out = rescale_stem(w, ([0.5] * 3, [0.2] * 3), ([0.5] * 3, [0.4, 0.2, 0.1]))
    assert torch.allclose(out[:, 0], 2 * w[:, 0]) and torch.allclose(out[:, 2], 0.5 * w[:, 2])
    with pytest.raises(RecordError, match='only a different std can be folded'):
        rescale_stem(w, ([0.5] * 3, [0.2] * 3), ([0.485, 0.456, 0.406], [0.2] * 3))


# ------------------------------------------------------------------------------ the tool
def test_tool_export_import_force_and_probes(exported, tmp_path):
    tool = _tool()
    out_root = str(tmp_path / 'bb')
    args = ['export', exported['enc'], '--out-root', out_root, '--name', 'patch',
            '--trigger', '{"type": "PatchTrigger", "size": 4, "pattern": "white", '
            '"position": [28, 28]}', '--target', '3',
            '--cfg-options', 'test_evaluator.epochs=2', '--data-root', exported['data_root'],
            '--probe-features', 'standardize', '--num-test', '30', '--device', 'cpu']
    assert tool.main(args) == 0
    rec = load_record(osp.join(out_root, 'record', 'patch', 'attack_result.pt'))
    assert rec['bmaiu']['probe']['feature_mode'] == 'standardize'
    assert rec['bmaiu']['probe']['epochs'] == 2 and rec['model']['linear.bias'].abs().sum() > 0
    assert len(rec['bd_test']['poison_indicator']) == 100  # over the whole test split
    assert rec['bmaiu']['num_test'] == 30 and rec['bmaiu']['attack']['target'] == 3
    # the default L2 probe has no bias (so that it decides identically on raw features)
    assert not load_record(exported['summary']['record'])['model']['linear.bias'].any()
    # never overwrite without --force
    with pytest.raises(ConfigValueError, match='--force'):
        tool._export(tool.parse_args(args))
    assert tool.main(args) == 2
    # a given probe, replacing the record
    probe = tmp_path / 'probe.pth'
    torch.save({'fc.weight': torch.randn(10, 512), 'fc.bias': torch.randn(10)}, str(probe))
    assert tool.main(args + ['--force', '--probe', str(probe)]) == 0
    rec = load_record(osp.join(out_root, 'record', 'patch'))
    assert torch.equal(rec['model']['linear.weight'], torch.load(str(probe))['fc.weight'])
    assert rec['bmaiu']['probe']['source'] == str(probe)
    # import through the tool: metrics JSON and an encoder file for the plugin
    enc_out, metrics_out = str(tmp_path / 'enc_back.pth'), str(tmp_path / 'm.json')
    assert tool.main(['import', osp.join(out_root, 'record', 'patch'), '--data-root',
                      exported['data_root'], '--out', enc_out, '--metrics-out', metrics_out,
                      '--device', 'cpu']) == 0
    import json
    with open(metrics_out) as f:
        m = json.load(f)['metrics']
    assert m['num_clean_test'] == 30 and m['BA'] == pytest.approx(rec['bmaiu']['metrics']['BA'])
    assert torch.load(enc_out)['state_dict']['head.fc.weight'].shape == (10, 512)
    # BackdoorBench's own loading procedure builds and scores the record as exported
    assert tool.main(['verify', osp.join(out_root, 'record', 'patch'), '--data-root',
                      exported['data_root']]) == 0
    # user errors are one line, exit status 2
    assert tool.main(['import', osp.join(out_root, 'record', 'patch'), '--out', enc_out]) == 2
    assert tool.main(['export', exported['enc'], '--out-root', out_root, '--attack', 'nope',
                      '--data-root', exported['data_root']]) == 2
