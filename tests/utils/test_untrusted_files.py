"""Hostile files: each class of crafted pickle is refused or read as inert data, never run.

Every test builds its payload itself (raw pickle instructions, put into a torch archive, a plain
pickle, a CIFAR batch or a BackdoorBench record) and checks that no marker file appears, the
process survives, and the refusal names the global it carries.
"""
import os
import os.path as osp
import pickle
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

import bmaiu_plugin  # noqa: F401  (installs the restricted loaders)
from bmaiu_plugin.utils.checkpoint import load_state_dict_file
from bmaiu_plugin.utils.errors import (BMAIUError, CheckpointError, DatasetFileError,
                                       UnsafeCheckpointError, UnsafeFileError)
from bmaiu_plugin.utils.safe_load import load_run_checkpoint, safe_pickle_load

from conftest import REPO_ROOT  # noqa: E402

REPO = REPO_ROOT


class Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


# ------------------------------------------------------------------------- pickle assembly
def _str(s: str) -> bytes:
    b = s.encode()
    return b'X' + struct.pack('<I', len(b)) + b


def _global(module: str, name: str) -> bytes:
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _call(module: str, name: str, *args: bytes) -> bytes:
    """``module.name(*args)`` as GLOBAL + args tuple + REDUCE."""
    return _global(module, name) + b'(' + b''.join(args) + b'tR'


def _proto2(body: bytes) -> bytes:
    return b'\x80\x02' + body + b'.'


def _state_dict_with(extra: bytes) -> bytes:
    """``{'w': <tensor placeholder: absent>, 'x': extra}`` as a protocol-2 pickle."""
    return _proto2(b'}(' + _str('x') + extra + b'u')


def torch_archive(path, pickle_bytes: bytes) -> str:
    """A torch zip archive (as ``torch.save`` writes) whose data.pkl is ``pickle_bytes``."""
    tmp = str(path) + '.tmp'
    torch.save({'w': torch.ones(2)}, tmp)
    with zipfile.ZipFile(tmp) as src, zipfile.ZipFile(str(path), 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('data.pkl'):
                data = pickle_bytes
            dst.writestr(info.filename, data)
    os.remove(tmp)
    return str(path)


def _marker_cmd(marker) -> bytes:
    return _str(f'touch {marker}')


# ------------------------------------------------------------------ 1. globals that run code
CODE_GLOBALS = [('os', 'system', 'os.system'), ('posix', 'system', 'posix.system'),
                ('subprocess', 'call', 'subprocess.call'), ('builtins', 'eval', 'builtins.eval'),
                ('builtins', 'exec', 'builtins.exec'), ('__builtin__', 'eval', 'builtins.eval'),
                ('torch', 'load', 'torch.load'), ('numpy', 'load', 'numpy.load'),
                ('mmengine.config', 'Config', 'mmengine.config.Config')]


@pytest.mark.parametrize('module,name,shown', CODE_GLOBALS)
@pytest.mark.parametrize('loader', ['encoder', 'run', 'plain-encoder', 'cifar'])
def test_code_global_refused_by_every_loader(tmp_path, module, name, shown, loader):
    marker = tmp_path / 'MARKER'
    body = _state_dict_with(_call(module, name, _marker_cmd(marker)))
    if loader in ('encoder', 'run'):
        path = torch_archive(tmp_path / 'evil.pth', body)
        fn = load_state_dict_file if loader == 'encoder' else load_run_checkpoint
        err_cls = UnsafeCheckpointError
    else:
        path = str(tmp_path / 'evil.pkl')
        with open(path, 'wb') as f:
            f.write(body)
        fn = load_state_dict_file if loader == 'plain-encoder' else safe_pickle_load
        err_cls = UnsafeCheckpointError if loader == 'plain-encoder' else UnsafeFileError
    with pytest.raises(err_cls) as e:
        fn(path)
    msg = str(e.value)
    assert not marker.exists()
    assert msg.startswith(f'refused to load {path} as unsafe: it names {shown},'), msg
    assert 'weights_only' not in msg and 'unreadable' not in msg and '\n' not in msg
    assert msg.endswith('could run code it carries')


def test_stack_global_protocol4_and_protocol0_payloads_refused(tmp_path):
    marker = tmp_path / 'MARKER'

    for proto in (0, 1, 4, 5):
        path = str(tmp_path / f'evil{proto}.pkl')
        with open(path, 'wb') as f:
            pickle.dump({'state_dict': {'w': 1}, 'x': Evil(marker)}, f, protocol=proto)
        with pytest.raises(UnsafeFileError, match=r'it names (os|posix)\.system'):
            load_state_dict_file(path)
        with pytest.raises(UnsafeFileError, match=r'it names (os|posix)\.system'):
            safe_pickle_load(path)
    assert not marker.exists()


def test_torch_save_of_code_object_refused_in_both_formats(tmp_path):
    marker = tmp_path / 'MARKER'

    for zip_format in (True, False):
        path = str(tmp_path / f'evil_{zip_format}.pth')
        torch.save({'state_dict': {'w': torch.ones(1)}, 'x': Evil(marker)}, path,
                   _use_new_zipfile_serialization=zip_format)
        for fn in (load_state_dict_file, load_run_checkpoint):
            with pytest.raises(UnsafeCheckpointError, match=r'names (os|posix)\.system'):
                fn(path)
    assert not marker.exists()


@pytest.mark.parametrize('op', [b'\x82\x01', b'P1\n', b'i'])  # EXT1, PERSID, INST
def test_instructions_plain_data_never_needs_are_refused(tmp_path, op):
    path = str(tmp_path / 'op.pkl')
    with open(path, 'wb') as f:
        f.write(b'\x80\x02' + op + b'.')
    with pytest.raises(BMAIUError) as e:
        safe_pickle_load(path)
    assert '\n' not in str(e.value)


# ------------------------------------------------------------------- 2. numpy dtype forging
def _forged_array(dtype_code: str, state_tail: bytes, raw: bytes, shape=(4,)) -> bytes:
    dtype = (_global('numpy', 'dtype') + b'(' + _str(dtype_code) + b'\x89\x88tR' +
             b'(K\x03' + _str('|') + state_tail + b'tb')
    shape_b = b'(' + b''.join(b'K' + bytes([s]) for s in shape) + b't'
    return (_global('numpy.core.multiarray', '_reconstruct') + b'(' + _global('numpy', 'ndarray')
            + b'(K\x00t' + _latin1_bytes(b'b') + b'tR' + b'(K\x01' + shape_b + dtype + b'\x89' +
            _latin1_bytes(raw) + b'tb')


def _latin1_bytes(raw: bytes) -> bytes:
    """Bytes as protocol 2 writes them: ``_codecs.encode(text, 'latin1')``."""
    return _call('_codecs', 'encode', _str(raw.decode('latin1')), _str('latin1'))


FORGED = {
    # object dtype: the array would hold pointers forged from the raw bytes
    'object-dtype': _forged_array('O8', b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?', b'\x41' * 32),
    # a plain dtype whose state claims fields and a huge itemsize
    'forged-fields': _forged_array('V8', b'(X\x01\x00\x00\x00at}J\x00\x00\x00\x40K\x01K\x00',
                                   b'\x00' * 32),
    # data shorter than the shape claims
    'short-data': _forged_array('u1', b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00', b'\x00',
                                shape=(200,)),
}


@pytest.mark.parametrize('case', sorted(FORGED))
def test_forged_numpy_state_never_reaches_numpy(tmp_path, case):
    """Run in a fresh process: a forged dtype would kill it with SIGSEGV when freed."""
    body = _state_dict_with(FORGED[case])
    path = torch_archive(tmp_path / 'forged.pth', body)
    plain = str(tmp_path / 'forged.pkl')
    with open(plain, 'wb') as f:
        f.write(body)
    script = f"""
import gc, bmaiu_plugin
from bmaiu_plugin.utils.errors import BMAIUError
from bmaiu_plugin.utils.safe_load import load_run_checkpoint, safe_pickle_load
from bmaiu_plugin.utils.checkpoint import load_state_dict_file
for fn, p in ((load_run_checkpoint, {path!r}), (safe_pickle_load, {plain!r}),
              (load_state_dict_file, {path!r})):
    try:
        fn(p)
        print('loaded', fn.__name__)
    except BMAIUError as e:
        print('refused', fn.__name__, str(e).splitlines()[0][:300])
gc.collect()
print('alive')
"""
    r = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                       timeout=120, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[-1] == 'alive'
    assert lines[0].startswith('refused load_run_checkpoint') and 'numpy' in lines[0], lines
    assert lines[1].startswith('refused safe_pickle_load'), lines
    # an encoder file's numpy records are dropped unread; this one also holds no tensors
    assert lines[2].startswith('refused load_state_dict_file') and 'no state dict' in lines[2] \
        or 'holds no tensors' in lines[2], lines


def test_plain_numpy_arrays_and_scalars_decode_exactly(tmp_path):
    arrays = {'u8': np.arange(12, dtype=np.uint8).reshape(3, 4), 'f4': np.linspace(0, 1, 5,
                                                                                    dtype='>f4'),
              'i8F': np.asfortranarray(np.arange(6).reshape(2, 3)), 'b': np.array([True, False]),
              'empty': np.zeros((0, 3), np.float64), 's': np.float64(2.5), 'i': np.int64(-3)}
    for proto in (2, 4):
        path = str(tmp_path / f'arrays{proto}.pkl')
        with open(path, 'wb') as f:
            pickle.dump(arrays, f, protocol=proto)
        out = safe_pickle_load(path)
        for k, v in arrays.items():
            assert type(out[k]) is type(v) and np.asarray(out[k]).dtype == np.asarray(v).dtype
            assert np.array_equal(out[k], v)


# -------------------------------------------------------------- 3. HistoryBuffer / getattr
def test_history_buffer_class_state_cannot_be_overwritten(tmp_path):
    from mmengine.logging import HistoryBuffer
    before = dict(HistoryBuffer._statistics_methods)
    hb = _global('mmengine.logging.history_buffer', 'HistoryBuffer')
    # BUILD on the class itself, and through getattr(HistoryBuffer, '_statistics_methods')
    payloads = [hb + b'}(' + _str('_statistics_methods') + b'}u' + b'b',
                _call('builtins', 'getattr', hb, _str('_statistics_methods')) +
                b'(' + _str('min') + _global('os', 'system') + b'd' + b'b']
    for i, extra in enumerate(payloads):
        path = torch_archive(tmp_path / f'hb{i}.pth', _state_dict_with(extra))
        for fn in (load_run_checkpoint, load_state_dict_file):
            with pytest.raises(UnsafeCheckpointError):
                fn(path)
    assert HistoryBuffer._statistics_methods == before


def test_getattr_results_are_never_called(tmp_path):
    marker = tmp_path / 'MARKER'
    hb = _global('mmengine.logging.history_buffer', 'HistoryBuffer')
    # getattr(HistoryBuffer, 'min')(...) and getattr(HistoryBuffer, '__init__')(...)
    for i, attr in enumerate(['min', '__init__', '__class__']):
        call = _call('builtins', 'getattr', hb, _str(attr)) + b'(' + _marker_cmd(marker) + b'tR'
        path = torch_archive(tmp_path / f'ga{i}.pth', _state_dict_with(call))
        for fn in (load_run_checkpoint, load_state_dict_file):
            with pytest.raises(UnsafeCheckpointError, match='not an admitted function'):
                fn(path)
    assert not marker.exists()


def test_rebuild_helpers_with_records_do_not_crash(tmp_path):
    """torch's rebuild helpers fed records instead of storages: a clear error, no crash."""
    hb = _global('mmengine.logging.history_buffer', 'HistoryBuffer')
    call = _call('torch._utils', '_rebuild_tensor_v2', hb, b'K\x00', b'(K\x02t', b'(K\x01t',
                 b'\x89', _global('collections', 'OrderedDict') + b')R')
    path = torch_archive(tmp_path / 'rb.pth', _state_dict_with(call))
    with pytest.raises(CheckpointError):
        load_run_checkpoint(path)


@pytest.mark.timeout(60)
def test_exponential_structures_are_cheap_to_refuse(tmp_path):
    """A 1 KB pickle whose repr or expansion would take 2**60 steps."""
    depth = 60
    # {'k': [], 'k0': [[], []], ...}: entry i+1 is [entry i, entry i]
    body = b'}(' + _str('k') + b']q\x00'
    for i in range(depth):
        body += _str(f'k{i}') + b'](h' + bytes([i]) + b'h' + bytes([i]) + b'eq' + bytes([i + 1])
    body += b'u'
    t0 = time.time()
    # REDUCE on the structure (torch would format it into its error message)
    path = torch_archive(tmp_path / 'exp_reduce.pth', _proto2(body + b')R'))
    with pytest.raises(UnsafeCheckpointError, match='not an admitted function'):
        load_run_checkpoint(path)
    # the structure as data: expanded by the decoder within a budget, not forever
    path = torch_archive(tmp_path / 'exp_data.pth', _state_dict_with(body))
    with pytest.raises(CheckpointError, match='more than'):
        load_run_checkpoint(path)
    assert time.time() - t0 < 30


def test_resume_config_source_is_never_evaluated(tmp_path):
    from mmengine.runner.checkpoint import CheckpointLoader
    marker = tmp_path / 'MARKER'
    path = str(tmp_path / 'epoch_1.pth')
    code = f"import os\nos.system('touch {marker}')\n"
    torch.save({'meta': {'epoch': 1, 'iter': 5, 'config': code, 'cfg': code},
                'state_dict': {'w': torch.ones(2)},
                'message_hub': {'log_scalars': {}, 'runtime_info': {'cfg': code},
                                'resumed_keys': {}}}, path)
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert 'config' not in ckpt['meta'] and 'cfg' not in ckpt['meta']
    assert 'cfg' not in ckpt['message_hub']['runtime_info']
    assert ckpt['meta']['epoch'] == 1 and not marker.exists()


@pytest.mark.parametrize('meta,match', [
    ({'epoch': 'x'}, "meta 'epoch'"), ({'epoch': 1, 'iter': -1}, "meta 'iter'"),
    ('meta', "'meta' is not a dict")])
def test_malformed_run_checkpoint_is_one_error(tmp_path, meta, match):
    path = str(tmp_path / 'bad_meta.pth')
    torch.save({'meta': meta, 'state_dict': {'w': torch.ones(1)}}, path)
    with pytest.raises(CheckpointError, match=match):
        load_run_checkpoint(path)


SIMCLR_W16 = 'configs/selfsup/simclr_resnet18-w16_1xb256-coslr-8e_cifar10.py'
TINY_TRAIN = ['train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
              'train_dataloader.persistent_workers=False',
              'train_dataloader.dataset.check_md5=False']


def _train(args, root, epochs):
    return subprocess.run(
        [sys.executable, 'tools/train.py', SIMCLR_W16, '--no-validate'] + args +
        ['--cfg-options', f'train_cfg.max_epochs={epochs}'] + TINY_TRAIN,
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, 'BMAIU_DATA_ROOT': root, 'OMP_NUM_THREADS': '1',
             'PYTHONWARNINGS': 'ignore'})


# -------------------------------------------------------------------- 4. dataset files
def _write_cifar(root, batch_bytes=None, meta_bytes=None):
    from conftest import write_fake_cifar
    write_fake_cifar(str(root))
    folder = osp.join(str(root), 'cifar-10-batches-py')
    if batch_bytes is not None:
        with open(osp.join(folder, 'data_batch_3'), 'wb') as f:
            f.write(batch_bytes)
    if meta_bytes is not None:
        with open(osp.join(folder, 'batches.meta'), 'wb') as f:
            f.write(meta_bytes)
    return str(root)


def _good_batch() -> bytes:
    return pickle.dumps({'data': np.zeros((8, 3072), np.uint8), 'labels': [1] * 8}, protocol=2)


@pytest.mark.parametrize('case,content,error,match', [
    ('code', 'CODE', UnsafeFileError, r'it names (os|posix)\.system'),
    ('truncated', 'TRUNC', DatasetFileError, 'truncated or corrupt'),
    ('garbage', b'\x00\x01garbage', DatasetFileError, 'not a readable CIFAR batch file'),
    ('empty', b'', DatasetFileError, 'not a readable CIFAR batch file'),
    ('not-a-dict', pickle.dumps([1, 2], protocol=2), DatasetFileError, 'not a dict'),
    ('float-data', pickle.dumps({'data': np.zeros((2, 3072)), 'labels': [0, 1]}, protocol=2),
     DatasetFileError, "uint8"),
    ('bad-labels', pickle.dumps({'data': np.zeros((2, 3072), np.uint8), 'labels': [0, 12]},
                                protocol=2), DatasetFileError, 'class indices'),
    ('object-array', pickle.dumps({'data': np.array([None] * 2, dtype=object), 'labels': [0, 1]},
                                  protocol=2), DatasetFileError, 'plain numeric'),
])
def test_crafted_or_broken_cifar_batch(tmp_path, case, content, error, match):
    marker = tmp_path / 'MARKER'
    if content == 'CODE':
        content = pickle.dumps({'data': Evil(marker), 'labels': []}, protocol=2)
    elif content == 'TRUNC':
        content = _good_batch()[:5000]
    root = _write_cifar(tmp_path / 'cifar', batch_bytes=content)
    from bmaiu_plugin.datasets.cifar import BackdoorCIFAR10
    with pytest.raises(error, match=match):
        BackdoorCIFAR10(data_root=root, split='train', pipeline=[], check_md5=False)
    if case in ('code', 'truncated', 'garbage', 'empty', 'object-array'):
        # mmpretrain's own CIFAR10 reads through the same restricted unpickler
        with pytest.raises(error, match=match.replace('CIFAR batch file', '')):
            _mmpretrain_cifar(root)
    assert not marker.exists()


def _mmpretrain_cifar(root):
    """mmpretrain's own CIFAR10 (md5 check bypassed: the fake files have other sums)."""
    from mmpretrain.datasets import CIFAR10

    class NoMd5(CIFAR10):
        def _check_integrity(self):
            return True
    return NoMd5(data_root=root, split='train', pipeline=[])


def test_crafted_cifar_meta_refused(tmp_path):
    marker = tmp_path / 'MARKER'
    root = _write_cifar(tmp_path / 'cifar',
                        meta_bytes=pickle.dumps({'label_names': Evil(marker)}))
    from bmaiu_plugin.datasets.cifar import BackdoorCIFAR10

    class NoClasses(BackdoorCIFAR10):  # read the class names from batches.meta
        METAINFO = {}
    with pytest.raises(UnsafeFileError, match='batches.meta as unsafe'):
        NoClasses(data_root=root, split='test', pipeline=[], check_md5=False)
    assert not marker.exists()


def test_train_tool_with_crafted_cifar_is_one_error_line(tmp_path):
    marker = tmp_path / 'MARKER'
    root = _write_cifar(tmp_path / 'cifar',
                        batch_bytes=pickle.dumps({'data': Evil(marker), 'labels': []}, protocol=2))
    r = _train(['--work-dir', str(tmp_path / 'wd')], root, epochs=1)
    err = [ln for ln in r.stderr.splitlines() if ln.startswith('error:')]
    assert r.returncode == 2, r.stderr[-3000:]
    assert len(err) == 1 and 'as unsafe' in err[0] and 'data_batch_3' in err[0], r.stderr[-3000:]
    assert 'Traceback' not in r.stderr
    assert not marker.exists()


# ------------------------------------------------------------------ 5. BackdoorBench records
def test_crafted_backdoorbench_record_refused(tmp_path):
    from bmaiu_plugin.interop.backdoorbench import load_record
    marker = tmp_path / 'MARKER'
    path = str(tmp_path / 'attack_result.pt')
    torch.save({'model_name': 'preactresnet18', 'num_classes': 10, 'model': {},
                'x': Evil(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r'names (os|posix)\.system'):
        load_record(path)
    assert not marker.exists()


# --------------------------------------------------- 6. resume: the file's config never runs
@pytest.mark.parametrize('how', ['file', 'auto'])
def test_resume_never_runs_the_config_a_checkpoint_carries(tmp_path, how):
    root = _write_cifar(tmp_path / 'cifar')
    work = tmp_path / 'wd'
    r = _train(['--work-dir', str(work)], root, epochs=1)
    assert r.returncode == 0, r.stderr[-3000:]
    marker = tmp_path / 'MARKER'
    code = f"import os\nos.system('touch {marker}')\ngpu_ids = [0, 1, 2]\n"
    ckpt_path = str(work / 'epoch_1.pth')
    ckpt = load_run_checkpoint(ckpt_path)
    ckpt['meta']['config'] = ckpt['meta']['cfg'] = code
    ckpt['message_hub']['runtime_info']['cfg'] = code
    crafted = str(tmp_path / 'crafted.pth') if how == 'file' else ckpt_path
    torch.save(ckpt, crafted)
    args = ['--work-dir', str(work), '--resume'] + ([crafted] if how == 'file' else [])
    r = _train(args, root, epochs=2)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not marker.exists()
    assert 'resumed epoch: 1' in r.stdout + r.stderr
    assert osp.isfile(work / 'epoch_2.pth')


@pytest.mark.parametrize('cut', [3, 20, 40, 60, 100, 300, -1])
def test_batch_cut_anywhere_reads_as_truncated(tmp_path, cut):
    """A cut inside a global's name is a truncated file, not an unsafe one."""
    from bmaiu_plugin.datasets.cifar import read_cifar_batch
    path = str(tmp_path / 'data_batch_1')
    with open(path, 'wb') as f:
        f.write(_good_batch()[:cut])
    with pytest.raises(DatasetFileError, match=r'not a readable CIFAR batch file \(truncated'):
        read_cifar_batch(path)
