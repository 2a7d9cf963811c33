"""Tensors-only checkpoint loading: malicious pickles refused, real formats load."""
import os
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

import bmaiu_plugin  # noqa: F401
from bmaiu_plugin.utils.checkpoint import (load_encoder_weights, load_state_dict_file,
                                           match_backbone_state, safe_torch_load)
from bmaiu_plugin.utils.errors import BMAIUError, CheckpointError, UnsafeCheckpointError


class _Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'echo pwned > {self.marker}',))


class _Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 2)


def _message_hub_state():
    from mmengine.logging import MessageHub
    hub = MessageHub(name='bmaiu-test-hub')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 1.25)
    hub.update_info('iter', 7)
    state = hub.state_dict()
    from mmengine.logging import HistoryBuffer
    assert isinstance(state['log_scalars']['train/loss'], HistoryBuffer)
    return state


@pytest.fixture
def evil_ckpt(tmp_path):
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}, 'w2': torch.zeros(2), 'x': _Evil(marker)},
               str(path))
    return str(path), marker


@pytest.mark.parametrize('loader', [safe_torch_load, load_state_dict_file])
def test_malicious_checkpoint_is_refused_and_never_executed(evil_ckpt, loader):
    path, marker = evil_ckpt
    with pytest.raises(UnsafeCheckpointError) as e:
        loader(path)
    msg = str(e.value)
    assert 'refused' in msg
    assert path in msg
    assert 'system' in msg  # names what it references
    assert not marker.exists()
    assert isinstance(e.value, CheckpointError) and isinstance(e.value, BMAIUError)


def test_malicious_legacy_format_is_refused(tmp_path):
    marker = tmp_path / 'PWNED_legacy'
    path = str(tmp_path / 'evil_legacy.pth')
    torch.save({'w': torch.ones(2), 'x': _Evil(marker)}, path,
               _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        load_state_dict_file(path)
    assert not marker.exists()


def test_malicious_encoder_refused_by_load_encoder_weights(evil_ckpt):
    path, marker = evil_ckpt
    with pytest.raises(UnsafeCheckpointError):
        load_encoder_weights(_Tiny(), path)
    assert not marker.exists()


def test_refusal_message_is_one_line(evil_ckpt):
    path, _ = evil_ckpt
    with pytest.raises(UnsafeCheckpointError) as e:
        safe_torch_load(path)
    assert '\n' not in str(e.value)


# -------------------------------------------------------------------------------- good formats
def test_plain_state_dict_loads(tmp_path):
    model = _Tiny()
    path = str(tmp_path / 'plain.pth')
    torch.save(model.state_dict(), path)
    state = load_state_dict_file(path)
    assert set(state) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)
    assert isinstance(safe_torch_load(path), OrderedDict)


@pytest.mark.parametrize('key', ['state_dict', 'model', 'net', 'encoder'])
def test_common_wrappers_load(tmp_path, key):
    sd = {'backbone.w': torch.arange(4.)}
    path = str(tmp_path / f'{key}.pth')
    torch.save({key: sd, 'epoch': 3}, path)
    state = load_state_dict_file(path)
    assert list(state) == ['backbone.w'] and torch.equal(state['backbone.w'], torch.arange(4.))


def test_mmengine_style_checkpoint_without_history_loads(tmp_path):
    import numpy as np
    path = str(tmp_path / 'mm_nohub.pth')
    torch.save({'meta': {'epoch': 2, 'seed': 0, 'hist': np.arange(3.), 'cfg': 'x = 1'},
                'state_dict': OrderedDict(w=torch.ones(2, 2)),
                'optimizer': {'state': {}, 'param_groups': [{'lr': 0.1}]}}, path)
    state = load_state_dict_file(path)
    assert torch.equal(state['w'], torch.ones(2, 2))
    full = safe_torch_load(path)
    assert full['meta']['epoch'] == 2 and (full['meta']['hist'] == np.arange(3.)).all()


def test_mmengine_checkpoint_with_message_hub_loads(tmp_path):
    model = _Tiny()
    path = str(tmp_path / 'mm.pth')
    torch.save({'meta': {'epoch': 1, 'iter': 7, 'mmengine_version': '0.10.7'},
                'state_dict': OrderedDict(('backbone.' + k, v)
                                          for k, v in model.state_dict().items()),
                'message_hub': _message_hub_state()}, path)
    state = load_state_dict_file(path)
    assert set(state) == {'backbone.' + k for k in model.state_dict()}
    full = safe_torch_load(path)
    buf = full['message_hub']['log_scalars']['train/loss']
    assert buf.current() == 1.25 and buf.statistics('mean') == pytest.approx(1.375)
    assert full['message_hub']['runtime_info']['iter'] == 7


def test_checkpoint_written_by_stock_mmengine_loads(stock_mmengine_ckpt):
    state = load_state_dict_file(stock_mmengine_ckpt)
    assert torch.equal(state['backbone.w'], torch.arange(3.))


def test_safetensors_file_loads(tmp_path):
    from safetensors.torch import save_file
    model = _Tiny()
    path = str(tmp_path / 'enc.safetensors')
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    state = load_state_dict_file(path)
    assert set(state) == set(model.state_dict())
    fresh = _Tiny()
    assert load_encoder_weights(fresh, path) == path
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


def test_garbage_safetensors_raises_checkpoint_error(tmp_path):
    path = tmp_path / 'bad.safetensors'
    path.write_bytes(b'\x00' * 64)
    with pytest.raises(CheckpointError, match='safetensors'):
        load_state_dict_file(str(path))


# ----------------------------------------------------------------------- match_backbone_state
@pytest.mark.parametrize('prefix', ['', 'backbone.', 'module.', 'module.backbone.', 'encoder.',
                                    'f.', 'online_net.backbone.'])
def test_match_backbone_state_finds_prefix(prefix):
    model = _Tiny()
    state = {prefix + k: v.clone() for k, v in model.state_dict().items()}
    state['neck.fc.weight'] = torch.zeros(3, 3)  # unrelated keys are ignored
    state['head.fc.bias'] = torch.zeros(3)
    out = match_backbone_state(state, _Tiny())
    assert set(out) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert out[k] is state[prefix + k]
    fresh = _Tiny()
    fresh.load_state_dict(out, strict=True)


def test_match_backbone_state_prefers_most_hits():
    model = _Tiny()
    state = {'backbone.' + k: v for k, v in model.state_dict().items()}
    state['fc.weight'] = torch.zeros(2, 4)  # one stray key under the empty prefix
    out = match_backbone_state(state, model)
    assert out['conv.weight'] is state['backbone.conv.weight']


def test_match_backbone_state_names_missing_keys():
    model = _Tiny()
    state = {'backbone.' + k: v for k, v in model.state_dict().items() if not k.startswith('fc.')}
    with pytest.raises(CheckpointError) as e:
        match_backbone_state(state, model, source='enc.pth')
    msg = str(e.value)
    assert '2 missing' in msg and 'fc.weight' in msg and 'enc.pth' in msg and '_Tiny' in msg


def test_match_backbone_state_names_shape_mismatch():
    state = {'backbone.' + k: v for k, v in _Tiny(width=8).state_dict().items()}
    with pytest.raises(CheckpointError) as e:
        match_backbone_state(state, _Tiny(width=4), source='wide.pth')
    msg = str(e.value)
    assert 'another shape' in msg
    assert 'conv.weight: checkpoint (8, 3, 3, 3) vs model (4, 3, 3, 3)' in msg


def test_match_backbone_state_no_overlap():
    with pytest.raises(CheckpointError, match='none of its .* parameter names'):
        match_backbone_state({'foo.bar': torch.zeros(1)}, _Tiny(), source='x.pth')


# --------------------------------------------------------------------------- unreadable files
def test_missing_file_names_path(tmp_path):
    path = str(tmp_path / 'nope' / 'enc.pth')
    for fn in (load_state_dict_file, safe_torch_load):
        with pytest.raises(CheckpointError) as e:
            fn(path)
        assert path in str(e.value)
        assert not isinstance(e.value, UnsafeCheckpointError)
    with pytest.raises(CheckpointError, match='not found'):
        load_state_dict_file(None)


def test_truncated_file_raises_checkpoint_error(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save({'w': torch.randn(64, 64)}, good)
    data = open(good, 'rb').read()
    bad = tmp_path / 'trunc.pth'
    bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_state_dict_file(str(bad))
    assert str(bad) in str(e.value) and 'not a readable' in str(e.value)


def test_binary_garbage_raises_checkpoint_error(tmp_path):
    bad = tmp_path / 'garbage.pth'
    bad.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CheckpointError) as e:
        load_state_dict_file(str(bad))
    assert str(bad) in str(e.value)


def test_text_garbage_raises_checkpoint_error(tmp_path):
    bad = tmp_path / 'text.pth'
    bad.write_bytes(b'this is not a checkpoint at all\n' * 20)
    with pytest.raises(CheckpointError):
        load_state_dict_file(str(bad))


def test_empty_file_raises_checkpoint_error(tmp_path):
    bad = tmp_path / 'empty.pth'
    bad.write_bytes(b'')
    with pytest.raises(CheckpointError):
        load_state_dict_file(str(bad))


def test_file_without_tensors_raises(tmp_path):
    path = str(tmp_path / 'notensors.pth')
    torch.save({'epoch': 3, 'lr': 0.1}, path)
    with pytest.raises(CheckpointError, match='no tensors'):
        load_state_dict_file(path)
    path2 = str(tmp_path / 'list.pth')
    torch.save([torch.ones(1)], path2)
    with pytest.raises(CheckpointError, match='no state dict'):
        load_state_dict_file(path2)
