"""Exported records load in BackdoorBench's own procedure, and what cannot load is refused.

The procedure (``bmaiu_plugin.interop.bb_procedure``) builds BackdoorBench's network for the
record's ``model_name`` independently of the plugin's backbones, renames the record's entries
by position, loads strictly and feeds ``ToTensor`` + ``Normalize`` with BackdoorBench's CIFAR-10
constants: what BackdoorBench's ``load_attack_result`` and its defenses do with a record.
"""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.interop import EXPORTABLE, bb_model_name
from bmaiu_plugin.interop.backdoorbench import (BB_NORMALIZATION, RecordError,
                                                export_attack_record, import_attack_record,
                                                load_cifar10, load_record,
                                                torch_load_allow_list)
from bmaiu_plugin.interop.bb_procedure import bb_evaluate, bb_generate_cls_model, bb_load_model
from bmaiu_plugin.models.features import PixelNormalizer, pool_features
from bmaiu_plugin.models.features import CIFAR10_MEAN, CIFAR10_STD
from conftest import REPO_ROOT, build_model, randomize_bn, write_fake_cifar

PREACT = dict(type='PreActResNet', depth=18)
RESNET18 = dict(type='ResNet', depth=18, norm_cfg=dict(type='BN'))


def _bb_input(imgs: torch.Tensor) -> torch.Tensor:
    """BackdoorBench's test transform for CIFAR-10: ToTensor, then Normalize."""
    mean, std = BB_NORMALIZATION['cifar10']
    return (imgs.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / \
        torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('bbp') / 'cifar')
    write_fake_cifar(root)
    return root


@pytest.mark.parametrize('cfg,name', [(PREACT, 'preactresnet18'), (RESNET18, 'resnet18')],
                         ids=['preactresnet18', 'resnet18-imagenet-stem'])
def test_exported_record_runs_in_backdoorbench_procedure(tmp_path, data_root, cfg, name):
    net = randomize_bn(build_model(cfg), seed=3)
    enc = str(tmp_path / 'enc.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in net.state_dict().items()}}, enc)
    s = export_attack_record(enc, str(tmp_path / 'out'), 'rec', backbone=cfg,
                             attack='badencoder', data_root=data_root, probe_cfg=dict(epochs=3))
    record = load_record(s['record'])
    assert record['model_name'] == name

    # BackdoorBench's factory + positional renaming + strict load
    model = bb_load_model(record)
    assert type(model).__module__ != type(net).__module__  # not the exporter's own network
    imp = import_attack_record(s['record'], data_root=data_root)
    x_bd = imp.bd_images
    with torch.no_grad():
        bb_logits = model(_bb_input(x_bd))
        # the encoder under the plugin's own normalization + the exported head
        head = imp.classifier.fc
        ref = head(pool_features(net(PixelNormalizer(CIFAR10_MEAN, CIFAR10_STD)(x_bd))))
    assert torch.allclose(bb_logits, ref, atol=1e-4, rtol=1e-4)
    assert torch.equal(bb_logits.argmax(1), ref.argmax(1))

    # the same BA / ASR / PA as the export reported, computed BackdoorBench's way
    clean = load_cifar10(data_root, 'test')
    res = bb_evaluate(s['record'], clean_test=clean)
    assert res['num_bd_test'] == s['num_poisoned'] == len(x_bd)
    for k in ('BA', 'ASR', 'PA'):
        assert res[k] == pytest.approx(s['metrics'][k], abs=1e-6), k
    assert torch.equal(res['predictions_bd'], ref.argmax(1))


def test_backdoorbench_written_preact_record_imports(tmp_path, monkeypatch):
    """A record as BackdoorBench writes it for its default CIFAR model imports tensors-only
    and gives BackdoorBench's logits."""
    from PIL import Image
    monkeypatch.chdir(tmp_path)  # no ./data/cifar10 here: the triggered set only
    bb = randomize_bn(bb_generate_cls_model('preactresnet18'), seed=4)
    root = tmp_path / 'bbroot'
    rng = np.random.default_rng(1)
    imgs, data_dict = [], {}
    for i in range(6):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        rel = f'record/pre/bd_test_dataset/{i % 3 + 1}/{i}.png'
        os.makedirs(osp.dirname(root / rel), exist_ok=True)
        Image.fromarray(img).save(root / rel)
        imgs.append(img)
        data_dict[i] = {'path': rel, 'other_info': [0, i % 3 + 1]}
    record = {
        'model_name': 'preactresnet18', 'num_classes': 10,
        'model': {'module.' + k: v for k, v in bb.state_dict().items()},  # DataParallel save
        'data_path': './data/cifar10', 'img_size': [32, 32, 3], 'clean_data': 'cifar10',
        'bd_train': None,
        'bd_test': {'bd_data_container': {'save_folder_path': 'record/pre/bd_test_dataset',
                                          'data_dict': data_dict, 'save_file_format': '.png'},
                    'getitem_all': True, 'getitem_all_switch': False,
                    'original_index_array': np.arange(6),
                    'poison_indicator': np.ones(6, dtype=np.int64),
                    'save_folder_path': 'record/pre/bd_test_dataset'}}
    path = root / 'record' / 'pre' / 'attack_result.pt'
    torch.save(record, str(path))
    imp = import_attack_record(str(path), evaluate=True)
    assert imp.metrics['num_bd_test'] == 6 and 'BA' not in imp.metrics
    assert imp.backbone_cfg == dict(type='PreActResNet', depth=18, base_channels=64)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = bb(_bb_input(x))
    assert torch.allclose(imp.classifier.logits(x), ref, atol=1e-4, rtol=1e-4)
    assert torch.equal(imp.bd_predictions, ref.argmax(1))


REFUSED = [
    (dict(type='ResNet_CIFAR', depth=18), "torchvision's ImageNet-stem network"),
    (dict(type='SENet_CIFAR', depth=18), "'senet18' is a different network"),
    (dict(type='PreActResNet', depth=18, base_channels=16), 'only depth 18, width 64'),
    (dict(type='PreActResNet', depth=34), 'only depth 18, width 64'),
    (dict(type='ResNet', depth=18, base_channels=32), "torchvision's resnet18/34/50"),
    (dict(type='ResNet', depth=101), "torchvision's resnet18/34/50"),
    (dict(type='VGG_CIFAR', depth=11), 'BackdoorBench has no network for VGG_CIFAR'),
]


@pytest.mark.parametrize('cfg,why', REFUSED, ids=[f"{c['type']}-{i}" for i, (c, _) in
                                                  enumerate(REFUSED)])
def test_unexportable_encoder_refused_before_any_work(tmp_path, cfg, why):
    with pytest.raises(RecordError) as e:
        bb_model_name(cfg)
    msg = str(e.value)
    assert why in msg and EXPORTABLE in msg and len(msg.splitlines()) == 1
    # the export stops there: no encoder file, no data and no record needed or written
    with pytest.raises(RecordError, match='cannot be exported'):
        export_attack_record(str(tmp_path / 'missing.pth'), str(tmp_path / 'out'), 'x',
                             backbone=cfg, attack='badencoder',
                             data_root=str(tmp_path / 'no_data'))
    assert not (tmp_path / 'out').exists()


def test_exportable_names():
    assert bb_model_name(PREACT) == 'preactresnet18'
    assert [bb_model_name(dict(type='ResNet', depth=d)) for d in (18, 34, 50)] == \
        ['resnet18', 'resnet34', 'resnet50']


def test_tool_refuses_cifar_stem_resnet_in_one_line(tmp_path, data_root):
    net = build_model(dict(type='ResNet_CIFAR', depth=18, norm_cfg=dict(type='BN')))
    enc = str(tmp_path / 'enc.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in net.state_dict().items()}}, enc)
    r = subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'backdoorbench.py'),
                        'export', enc, '--out-root', str(tmp_path / 'bb'), '--attack',
                        'badencoder', '--config', 'configs/eval/probe_resnet18_cifar10.py',
                        '--data-root', data_root], capture_output=True, text=True,
                       timeout=120, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 2, r.stderr[-1500:]
    errors = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith('error:')]
    assert len(errors) == 1 and 'ResNet_CIFAR encoders cannot be exported' in errors[0]
    assert 'preactresnet18' in errors[0] and 'Traceback' not in r.stderr
    assert not (tmp_path / 'bb').exists()


def test_record_loads_under_new_torch_with_numpy_allow_list(tmp_path, data_root):
    """BackdoorBench's ``torch.load(path)``: its pinned torch (1.11) unpickles the record as is;
    torch >= 2.6 defaults to ``weights_only=True``, which refuses the record's numpy arrays
    until numpy's array reconstruction is allow-listed (docs/backdoorbench.md)."""
    net = build_model(PREACT)
    enc = str(tmp_path / 'enc.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in net.state_dict().items()}}, enc)
    s = export_attack_record(enc, str(tmp_path / 'out'), 'r', backbone=PREACT,
                             attack='badencoder', data_root=data_root, num_test=20,
                             probe_cfg=dict(epochs=1))
    with pytest.raises(Exception, match='weights_only'):
        torch.load(s['record'])
    with torch.serialization.safe_globals(torch_load_allow_list()):
        rec = torch.load(s['record'], weights_only=True)
    assert rec['model_name'] == 'preactresnet18'
    assert rec['bd_test']['original_index_array'].dtype == np.int64
