"""Reading pickled files that may come from anyone, without running anything they carry.

A pickle is a program: its ``GLOBAL`` / ``REDUCE`` / ``BUILD`` instructions import and call
whatever it names.  Every pickle the plugin reads (encoders, resume files, BackdoorBench records,
CIFAR batches) goes through one policy:

* **Nothing the file names is ever called.**  The few names that real files carry as data
  (numpy's array / scalar / dtype helpers, mmengine's ``HistoryBuffer``, the ``getattr`` stock
  mmengine pickles it with) resolve to inert :class:`Pickled` records of the arguments and
  state.  Every other name is refused with :class:`~.errors.UnsafeFileError` naming it.
* **A record becomes a value only through a validator** (:func:`decode`): numpy arrays and
  scalars of plain numeric dtypes built with ``np.frombuffer`` from sizes checked first, and
  ``HistoryBuffer`` through its constructor (class state is never touched).  Encoders need none of
  this: their records are dropped, and only the tensors are kept.
* **torch files are checked before torch reads them**: :class:`RestrictedUnpickler` replays the
  archive's pickle with every name as a record (so no error path ever formats an object the
  file built), then ``torch.load(weights_only=True)`` reads it with those records registered.
  Tensors come back as plain strided tensors without hooks or attributes.
"""
import io
import os.path as osp
import pickle
import zipfile
from collections import OrderedDict
from typing import Dict, Optional

import numpy as np
import torch

from .errors import CheckpointError, UnsafeCheckpointError, UnsafeFileError, clip

__all__ = ['Pickled', 'RestrictedUnpickler', 'safe_pickle_load', 'safe_torch_load', 'decode',
           'sanitize_run_checkpoint']

#: Largest pickle stream (the part that is not tensor storage) read from an archive.
MAX_PICKLE_BYTES = 1 << 30
#: Most containers a decoded object may expand to (shared references are expanded).
MAX_NODES = 1_000_000
#: Deepest nesting of containers a decoded object may have.
MAX_DEPTH = 64


class Pickled:
    """Inert record of an object a pickle describes: the global's name, arguments and state.

    Constructing, ``NEWOBJ``-ing or ``BUILD``-ing it only stores what it is given.
    """

    global_name = ''

    def __new__(cls, *args):
        self = object.__new__(cls)
        self.args, self.state = args, None
        return self

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self) -> str:
        return f'<record of {self.global_name}>'


_RECORDS: Dict[str, type] = {}


def record_class(name: str) -> type:
    """The :class:`Pickled` subclass standing for the global ``name`` (one per name)."""
    if name not in _RECORDS:
        _RECORDS[name] = type(f'Pickled[{name}]', (Pickled,), {'global_name': name})
    return _RECORDS[name]


_NP_ARRAY, _NP_SCALAR, _NP_DTYPE, _NDARRAY = ('numpy.reconstruct', 'numpy.scalar', 'numpy.dtype',
                                             'numpy.ndarray')
_HISTORY, _GETATTR = 'mmengine.HistoryBuffer', 'builtins.getattr'
#: Globals real files carry as data, by the record kind each stands for.
DATA_GLOBALS = {
    'numpy.core.multiarray._reconstruct': _NP_ARRAY,
    'numpy._core.multiarray._reconstruct': _NP_ARRAY,
    'numpy.core.multiarray.scalar': _NP_SCALAR,
    'numpy._core.multiarray.scalar': _NP_SCALAR,
    'numpy.dtype': _NP_DTYPE,
    'numpy.ndarray': _NDARRAY,
    'mmengine.logging.history_buffer.HistoryBuffer': _HISTORY,
    'builtins.getattr': _GETATTR,
    '__builtin__.getattr': _GETATTR,
}
#: Globals of torch's own archive format (tensor storages and rebuild helpers).
TENSOR_GLOBALS = frozenset(
    ['torch._utils._rebuild_tensor', 'torch._utils._rebuild_tensor_v2',
     'torch._utils._rebuild_tensor_v3', 'torch._utils._rebuild_parameter', 'torch.Size',
     'torch.storage.UntypedStorage', 'torch.storage.TypedStorage'] +
    [f'torch.{s.__name__}' for s in torch._storage_classes] +
    [str(t) for t in torch.storage._dtype_to_storage_type_map()])
_DATA_RECORDS = {kind: record_class(kind) for kind in set(DATA_GLOBALS.values())}


def _empty_bytes(*args):
    """``builtins.bytes`` as protocol 2 pickles ``b''`` (with no arguments) and nothing else."""
    if args:
        raise pickle.UnpicklingError('builtins.bytes is admitted without arguments only')
    return b''


def _latin1(text, encoding='latin1'):
    """``_codecs.encode`` as pickles use it (protocol 2 bytes): latin-1 only."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError('_codecs.encode is admitted for latin-1 text only')
    return text.encode('latin1')


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something outside the policy (``global_name`` names it)."""

    def __init__(self, reason: str, global_name: Optional[str] = None):
        super().__init__(reason)
        self.reason, self.global_name = reason, global_name


class RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler that calls nothing but inert records and two builtins' equivalents.

    Globals resolve to :func:`record_class` records (``collections.OrderedDict`` to itself,
    ``_codecs.encode`` to a latin-1-only encoder); ``REDUCE`` / ``NEWOBJ`` may target only those,
    ``BUILD`` only a record or an ``OrderedDict``; extension codes, ``INST`` / ``OBJ``, text
    persistent ids and out-of-band buffers are refused.

    Args:
        file: A binary file object.
        tensors (bool): Replay a torch archive: admit :data:`TENSOR_GLOBALS` (as records) and
            storage persistent ids.
        encoding (str): How protocol-2 byte strings are read (``'bytes'`` or ``'latin1'``).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, tensors: bool = False, encoding: str = 'bytes'):
        super().__init__(file, encoding=encoding)
        self.tensors = tensors
        self._callables = {id(c) for c in _DATA_RECORDS.values()} | {
            id(OrderedDict), id(_latin1), id(_empty_bytes)}

    def find_class(self, module, name):
        if not isinstance(module, str) or not isinstance(name, str):
            raise _Refused('a global name that is not text')
        full = f'{module}.{name}'
        if self.proto < 3:
            import _compat_pickle
            if (module, name) in _compat_pickle.NAME_MAPPING:
                full = '.'.join(_compat_pickle.NAME_MAPPING[(module, name)])
            elif module in _compat_pickle.IMPORT_MAPPING:
                full = f'{_compat_pickle.IMPORT_MAPPING[module]}.{name}'
        if full in DATA_GLOBALS:
            return _DATA_RECORDS[DATA_GLOBALS[full]]
        if full == 'collections.OrderedDict':
            return OrderedDict
        if full == '_codecs.encode':
            return _latin1
        if full == 'builtins.bytes':
            return _empty_bytes
        if self.tensors and full in TENSOR_GLOBALS:
            cls = record_class(full)
            self._callables.add(id(cls))
            return cls
        raise _Refused('it names a global outside the allow-list', full)

    def persistent_load(self, pid):
        if self.tensors and type(pid) is tuple and pid and pid[0] in ('storage', b'storage'):
            return record_class('torch storage')()
        raise _Refused('a persistent reference that is not a tensor storage')

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in self._callables or type(args) is not tuple:
            raise _Refused('it calls an object that is not an admitted function')
        self.stack[-1] = func(*args)

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        if not (isinstance(cls, type) and issubclass(cls, Pickled)) or type(args) is not tuple:
            raise _Refused('it creates an object of a class outside the allow-list')
        self.append(cls.__new__(cls, *args))

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, Pickled) and not self._is_tensor(inst):
            inst.__setstate__(state)
        elif type(inst) is not OrderedDict:  # an OrderedDict's attributes are not kept
            raise _Refused('it sets the state of an object outside the allow-list')

    @staticmethod
    def _is_tensor(inst) -> bool:
        return inst.global_name.startswith('torch')

    def _check(self, types, what: str):
        if type(self.stack[-1]) not in types:
            raise _Refused(f'it {what} an object that is not a plain container')

    def load_append(self):
        value = self.stack.pop()
        self._check((list,), 'appends to')
        self.stack[-1].append(value)

    def load_appends(self):
        items = self.pop_mark()
        if type(self.stack[-1]) is not list:
            raise _Refused('it appends to an object that is not a plain container')
        self.stack[-1].extend(items)

    def load_setitem(self):
        v, k = self.stack.pop(), self.stack.pop()
        self._check((dict, OrderedDict), 'sets an item of')
        self.stack[-1][k] = v

    def load_setitems(self):
        items = self.pop_mark()
        self._check((dict, OrderedDict), 'sets an item of')
        for i in range(0, len(items) - 1, 2):
            self.stack[-1][items[i]] = items[i + 1]

    def load_additems(self):
        items = self.pop_mark()
        self._check((set,), 'adds to')
        self.stack[-1].update(items)

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems


def _refuse(what: str):
    def load(self):
        raise _Refused(f'it uses the pickle instruction {what}, which plain data never needs')
    return load


for _op in ('INST', 'OBJ', 'NEWOBJ_EX', 'EXT1', 'EXT2', 'EXT4', 'PERSID', 'NEXT_BUFFER',
            'READONLY_BUFFER'):
    RestrictedUnpickler.dispatch[getattr(pickle, _op)[0]] = _refuse(_op)


def _refusal(path: str, err: '_Refused', error_cls=UnsafeFileError) -> UnsafeFileError:
    what = f'it names {clip(err.global_name, 80, quote=False)}, which is not data it may contain' \
        if err.global_name else clip(err.reason, 120, quote=False)
    return error_cls(f'refused to load {path} as unsafe: {what}; loading it as a pickle '
                     'could run code it carries')


def _replay(data: bytes, tensors: bool, encoding: str, count: int = 1):
    """Run :class:`RestrictedUnpickler` over ``count`` consecutive pickles of ``data``."""
    stream = io.BytesIO(data)  # reads never run past the end
    out = []
    for _ in range(count):
        try:
            out.append(RestrictedUnpickler(stream, tensors=tensors, encoding=encoding).load())
        except _Refused:
            if count == 1 and not data.endswith(pickle.STOP):
                # a cut file (e.g. inside a global's name), not a complete payload
                raise EOFError('the pickle has no end') from None
            raise
    return out


def _read_error(path: str, err: BaseException, kind: str, error_cls) -> Exception:
    reason = 'out of memory' if isinstance(err, MemoryError) else \
        'nested too deeply' if isinstance(err, RecursionError) else 'truncated or corrupt'
    return error_cls(f'{path} is not a readable {kind} ({reason}); replace it with a good copy')


def safe_pickle_load(path: str, encoding: str = 'bytes', kind: str = 'pickle file',
                     error_cls=CheckpointError):
    """Load a plain pickle (not a torch archive) under the restricted policy, then decode it.

    Args:
        path (str): The file.
        encoding (str): How protocol-2 byte strings are read (``'bytes'`` or ``'latin1'``).
        kind (str): What the file is, for messages (e.g. ``'CIFAR-10 batch file'``).
        error_cls (type): Error raised for an unreadable file.

    Returns:
        Any: Plain containers, numbers, strings, bytes and numpy arrays of plain dtypes.

    Raises:
        UnsafeFileError: The file names a global outside the allow-list.
        error_cls: The file is missing, truncated or malformed.
    """
    if not osp.isfile(path):
        raise error_cls(f'{kind} not found: {path}')
    with open(path, 'rb') as f:
        data = f.read()
    return safe_pickle_loads(data, path, encoding=encoding, kind=kind, error_cls=error_cls)


def safe_pickle_loads(data: bytes, source: str, encoding: str = 'bytes',
                      kind: str = 'pickle file', error_cls=CheckpointError):
    """:func:`safe_pickle_load` of bytes already read (``source`` names them in messages)."""
    try:
        obj = _replay(data, tensors=False, encoding=encoding)[0]
    except _Refused as e:
        raise _refusal(source, e) from None
    except (Exception, RecursionError) as e:  # truncated / garbage input
        raise _read_error(source, e, kind, error_cls) from None
    try:
        return decode(obj, numpy=True)
    except _Malformed as e:
        raise error_cls(f'{source} is not a valid {kind}: {e}') from None


# ------------------------------------------------------------------------------------ torch
def _archive_pickles(path: str):
    """``(pickle bytes, count)`` to replay for the torch file ``path``."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if any(n.endswith('/constants.pkl') or '/code/' in n for n in names):
                raise CheckpointError(f'{path} is a TorchScript archive, not a checkpoint; save '
                                      'the weights with torch.save(model.state_dict(), path)')
            pkl = [i for i in zf.infolist() if i.filename.endswith('data.pkl')]
            if len(pkl) != 1:
                raise CheckpointError(f'{path} is not a readable torch checkpoint (a zip file '
                                      'without one data.pkl); replace it with a good copy')
            if pkl[0].file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(f'{path} is not a readable torch checkpoint (its pickle '
                                      f'claims {pkl[0].file_size} bytes)')
            return zf.read(pkl[0]), 1
    with open(path, 'rb') as f:
        return f.read(), None  # legacy format: magic, protocol, sys info, object


def _replay_torch_file(path: str) -> None:
    """Check ``path`` under the restricted policy before torch reads it (see module doc)."""
    data, count = _archive_pickles(path)
    if count == 1:
        _replay(data, tensors=True, encoding='utf-8')
        return
    first = _replay(data, tensors=True, encoding='utf-8')[0]
    if first != torch.serialization.MAGIC_NUMBER:
        raise CheckpointError(f'{path} is a plain pickle, not a torch checkpoint; save it with '
                              'torch.save, or as .safetensors')
    _replay(data, tensors=True, encoding='utf-8', count=4)


def _torch_safe_globals():
    out = [(rec, name) for name, kind in DATA_GLOBALS.items()
           for rec in [_DATA_RECORDS[kind]]]
    return out + [(_latin1, '_codecs.encode'), (_empty_bytes, 'builtins.bytes')]


def safe_torch_load(path: str, map_location='cpu', records: str = 'decode',
                    kind: str = 'torch checkpoint', error_cls=CheckpointError):
    """Load a ``torch.save`` file without running anything it carries.

    Args:
        path (str): The file.
        map_location: Passed to ``torch.load``.
        records (str): What becomes of the numpy / ``HistoryBuffer`` objects the file carries:
            ``'decode'`` validates and rebuilds them (:func:`decode`), ``'drop'`` replaces them
            by ``None`` without looking at them (encoders need tensors only).
        kind (str): What the file is, for messages.
        error_cls (type): Error raised for a missing or unreadable file.

    Returns:
        Tensors (plain, strided, on ``map_location``), containers, numbers, strings and the
        decoded records.

    Raises:
        UnsafeCheckpointError: The file names a global outside the allow-list, or builds an
            object in a way plain data never is.
        error_cls: The file is missing, truncated or not a torch file.
    """
    if not osp.isfile(str(path)):
        raise error_cls(f'{kind} not found: {path}')
    path = str(path)
    try:
        _replay_torch_file(path)
    except _Refused as e:
        if e.global_name is None and not _starts_as_pickle(path):
            raise _read_error(path, e, kind, error_cls) from None
        raise _refusal(path, e, UnsafeCheckpointError) from None
    except CheckpointError:
        raise
    except (Exception, RecursionError) as e:
        raise _read_error(path, e, kind, error_cls) from None
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except (Exception, RecursionError) as e:
        raise _read_error(path, e, kind, error_cls) from None
    try:
        obj = _clean_tensors(obj, {}, 0)
        if records == 'drop':
            return decode(obj, numpy=False, history=False, drop_records=True)
        return decode(obj, numpy=True, history=True)
    except _Malformed as e:
        raise error_cls(f'{path} is not a valid {kind}: {e}') from None


def _starts_as_pickle(path: str) -> bool:
    """Whether ``path`` is a torch archive or starts like a pickle (a protocol 2+ header or a
    protocol-0 global), i.e. whether a refused instruction in it was written on purpose."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, 'rb') as f:
        head = f.read(1)
    return head in (b'\x80', b'c')


class _Malformed(ValueError):
    """A record or container that a validator does not accept."""


def _plain_tensor(t: torch.Tensor) -> torch.Tensor:
    if type(t) not in (torch.Tensor, torch.nn.Parameter) or t.layout != torch.strided or \
            t.is_quantized or t.is_meta:
        raise _Malformed('a tensor that is not a plain dense tensor')
    return t.detach()  # drops hooks, gradients and Python attributes


def _clean_tensors(obj, memo, depth):
    """Containers rebuilt with plain tensors; records kept for :func:`decode`."""
    if isinstance(obj, torch.Tensor):
        return _plain_tensor(obj)
    if type(obj) in (dict, OrderedDict, list, tuple):
        if depth > MAX_DEPTH:
            raise _Malformed(f'containers nested deeper than {MAX_DEPTH}')
        key = id(obj)
        if key in memo:
            return memo[key]
        if type(obj) in (dict, OrderedDict):
            out = type(obj)()
            memo[key] = out
            for k, v in obj.items():
                out[k] = _clean_tensors(v, memo, depth + 1)
            return out
        items = [_clean_tensors(v, memo, depth + 1) for v in obj]
        out = items if type(obj) is list else tuple(items)
        memo[key] = out
        return out
    return obj


# ----------------------------------------------------------------------------------- decode
_PLAIN_DTYPES = frozenset(['b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4',
                           'f8', 'c8', 'c16'])


def _kind(obj) -> Optional[str]:
    return obj.global_name if isinstance(obj, Pickled) else None


def _as_bytes(raw) -> bytes:
    if isinstance(raw, str):  # protocol-2 byte strings read with encoding='latin1'
        raw = raw.encode('latin1')
    if not isinstance(raw, (bytes, bytearray)):
        raise _Malformed('array data that is not bytes (object arrays are not admitted)')
    return bytes(raw)


def _decode_dtype(rec) -> np.dtype:
    if _kind(rec) != _NP_DTYPE or len(rec.args) < 1 or not isinstance(rec.args[0], str) or \
            rec.args[0] not in _PLAIN_DTYPES:
        raise _Malformed('a numpy dtype that is not a plain numeric type')
    dt = np.dtype(rec.args[0])
    state = rec.state
    if state is not None:
        if type(state) is not tuple or len(state) < 4 or state[1] not in ('<', '>', '|', '=') \
                or state[2] is not None or state[3] is not None:
            raise _Malformed('a numpy dtype with fields or an unknown byte order')
        if state[1] in '<>' and dt.itemsize > 1:
            dt = dt.newbyteorder(state[1])
    return dt


def _decode_array(rec) -> np.ndarray:
    args, state = rec.args, rec.state
    if len(args) < 1 or args[0] is not _DATA_RECORDS[_NDARRAY] \
            or type(state) is not tuple or len(state) != 5 or state[0] != 1:
        raise _Malformed('a numpy array record of an unknown form')
    _, shape, dtype, fortran, raw = state
    if type(shape) is not tuple or len(shape) > 32 or \
            not all(type(s) is int and s >= 0 for s in shape):
        raise _Malformed('a numpy array with an invalid shape')
    dt = _decode_dtype(dtype)
    raw = _as_bytes(raw)
    if int(np.prod(shape, dtype=object)) * dt.itemsize != len(raw):
        raise _Malformed('a numpy array whose data does not match its shape')
    return np.frombuffer(raw, dtype=dt).reshape(shape, order='F' if fortran else 'C').copy()


def _decode_scalar(rec):
    if len(rec.args) != 2:
        raise _Malformed('a numpy scalar record of an unknown form')
    dt = _decode_dtype(rec.args[0])
    raw = _as_bytes(rec.args[1])
    if len(raw) != dt.itemsize:
        raise _Malformed('a numpy scalar whose data does not match its type')
    return np.frombuffer(raw, dtype=dt)[0]


def _decode_history(rec, numpy_fn):
    from mmengine.logging import HistoryBuffer
    state = rec.state
    if rec.args or not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise _Malformed('a HistoryBuffer record of an unknown form')
    extra = set(state) - {'max_length', '_log_history', '_count_history', '_statistics_methods',
                          'statistics_methods'}
    if extra:
        raise _Malformed('a HistoryBuffer with unknown fields')
    max_length = state.get('max_length', 1000000)
    logs, counts = (numpy_fn(state.get(k)) for k in ('_log_history', '_count_history'))
    if type(max_length) is not int or not 0 < max_length <= 10 ** 8:
        raise _Malformed('a HistoryBuffer with an invalid max_length')
    for arr in (logs, counts):
        if not isinstance(arr, np.ndarray) or arr.ndim != 1 or arr.dtype.kind not in 'biuf':
            raise _Malformed('a HistoryBuffer whose history is not a 1-D numeric array')
    if len(logs) != len(counts):
        raise _Malformed('a HistoryBuffer whose histories differ in length')
    return HistoryBuffer(logs, counts, max_length)


def decode(obj, numpy: bool = True, history: bool = False, drop_records: bool = False):
    """Replace the :class:`Pickled` records in ``obj`` by validated values.

    Args:
        obj: What :func:`safe_torch_load` or the restricted unpickler returned.
        numpy (bool): Decode numpy arrays / scalars of plain numeric dtypes.
        history (bool): Decode mmengine ``HistoryBuffer`` records (resume files).
        drop_records (bool): Replace records not admitted by ``numpy`` / ``history`` by
            ``None`` instead of refusing.

    Returns:
        The object with plain containers (shared references expanded, within
        :data:`MAX_NODES`), numbers, strings, tensors and the admitted values.

    Raises:
        ValueError: (``_Malformed``) a record that no validator accepts, or containers nested
            deeper than :data:`MAX_DEPTH` or larger than :data:`MAX_NODES`.
    """
    budget = [MAX_NODES]

    def array(v):
        return walk(v, 0) if isinstance(v, Pickled) else v

    def walk(v, depth):
        budget[0] -= 1
        if budget[0] < 0:
            raise _Malformed(f'more than {MAX_NODES} objects')
        if depth > MAX_DEPTH:
            raise _Malformed(f'containers nested deeper than {MAX_DEPTH}')
        kind = _kind(v)
        if kind is None:
            if type(v) in (dict, OrderedDict):
                return type(v)((walk(k, depth + 1), walk(x, depth + 1)) for k, x in v.items())
            if type(v) in (list, tuple, set, frozenset):
                return type(v)(walk(x, depth + 1) for x in v)
            if v is None or type(v) in (bool, int, float, complex, str, bytes, bytearray) or \
                    isinstance(v, (torch.Tensor, np.ndarray, np.generic)):
                return v
            raise _Malformed(f'an object of type {clip(type(v).__name__, 80, quote=False)}')
        if numpy and kind == _NP_ARRAY:
            return _decode_array(v)
        if numpy and kind == _NP_SCALAR:
            return _decode_scalar(v)
        if history and kind == _HISTORY:
            return _decode_history(v, array)
        if drop_records:
            return None
        raise _Malformed(f'a {clip(kind, 80, quote=False)} object where plain data was expected')

    return walk(obj, 0)


# ----------------------------------------------------------------------------- run files
#: ``meta`` / ``runtime_info`` entries holding config source: never evaluated, dropped.
CONFIG_KEYS = ('config', 'cfg')


def sanitize_run_checkpoint(ckpt, source: str):
    """Validate an mmengine checkpoint for ``resume`` / ``load_from`` and drop config source.

    mmengine's ``Runner.resume`` evaluates ``meta['config']`` as Python; a resumed run restores
    weights, optimizer, schedulers and loop state only, so every config string the file carries
    is removed here, before any caller sees it.

    Args:
        ckpt: What :func:`safe_torch_load` (or another mmengine scheme) returned for the file.
        source (str): The file, for messages.

    Returns:
        The checkpoint without config source.
    """
    if not isinstance(ckpt, dict):
        return ckpt

    def fail(what):
        raise CheckpointError(f'{source} is not a valid mmengine checkpoint: {what}')

    meta = ckpt.get('meta')
    if meta is not None:
        if not isinstance(meta, dict):
            fail("'meta' is not a dict")
        for key in CONFIG_KEYS:
            meta.pop(key, None)
        for key in ('epoch', 'iter'):
            if key in meta and (type(meta[key]) is not int or meta[key] < 0):
                fail(f"meta '{key}' is not a non-negative integer")
    hub = ckpt.get('message_hub')
    if hub is not None:
        if not isinstance(hub, dict):
            fail("'message_hub' is not a dict")
        from mmengine.logging import HistoryBuffer
        for key, types in (('log_scalars', HistoryBuffer), ('runtime_info', object),
                           ('resumed_keys', bool)):
            part = hub.get(key, {})
            if not isinstance(part, dict) or not all(
                    isinstance(k, str) and isinstance(v, types) for k, v in part.items()):
                fail(f"message_hub '{key}' is not a dict of {types.__name__} by name")
        for key in CONFIG_KEYS:
            hub.get('runtime_info', {}).pop(key, None)
    return ckpt


def load_run_checkpoint(filename: str, map_location='cpu'):
    """An mmengine checkpoint for ``resume`` / ``load_from``: :func:`safe_torch_load` then
    :func:`sanitize_run_checkpoint`."""
    return sanitize_run_checkpoint(safe_torch_load(filename, map_location=map_location),
                                   filename)
