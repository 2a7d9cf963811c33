"""Checks of user input: numbers, choices, keys, and a pre-flight walk of a whole config.

Each check raises one :class:`~bmaiu_plugin.utils.errors.ConfigValueError` whose message names
the value (by its config path where known), what it must be, and what was given.

:func:`check_config` is the pre-flight walk ``finalize_config`` runs before any runner is built:

* every number in the config is finite (NaN passes ``value < 0`` tests; inf is never a weight);
* every dict with a ``type`` at a place mmengine builds from (model, optimizer, schedulers,
  loops, hooks, dataloaders and their datasets / samplers / transforms, evaluators, visualizer)
  names a registered type, and its keys are arguments of that type (see :func:`accepted_keys`)
  or keys its builder consumes (``priority`` of a hook, ``paramwise_cfg`` of an optimizer
  wrapper, ...);
* the run's counts can run: ``max_epochs`` / ``max_iters`` / ``batch_size`` integers >= 1,
  optimizer ``lr`` / ``weight_decay`` / ``momentum`` in range, and whatever a component's own
  ``check_cfg(cfg, config, path)`` static method adds (e.g. a stage schedule that leaves a stage
  without epochs);
* the plugin's hooks and triggers, whose constructors only check and store their arguments,
  are built once, so their own value checks run too.
"""
import difflib
import inspect
import math
import numbers
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

from .errors import ConfigValueError, clip

#: Keys every registry build consumes itself.
BUILD_KEYS = frozenset({'type', '_scope_'})
#: Third-party classes whose ``**kwargs`` go to their base class unchanged.
FORWARDING = frozenset({
    'mmengine.optim.scheduler.lr_scheduler.LRSchedulerMixin',
    'mmengine.optim.scheduler.momentum_scheduler.MomentumSchedulerMixin',
    'mmpretrain.models.backbones.resnet_cifar.ResNet_CIFAR'})


def is_number(value: Any) -> bool:
    """A real number that is not a bool (``True`` is an int to Python, never a count here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _interval(low, high, inclusive: Tuple[bool, bool]) -> str:
    if low is not None and high is not None:
        return f'in {"[" if inclusive[0] else "("}{low}, {high}{"]" if inclusive[1] else ")"}'
    if low is not None:
        return f'{">=" if inclusive[0] else ">"} {low}'
    return f'{"<=" if inclusive[1] else "<"} {high}'


def check_number(name: str, value: Any, low: Optional[float] = None,
                 high: Optional[float] = None, *,
                 inclusive: Union[bool, Tuple[bool, bool]] = True, integer: bool = False,
                 optional: bool = False) -> Union[int, float, None]:
    """Check that ``value`` is a finite number (an integer with ``integer``) in a range.

    Args:
        name (str): What the value is, for the message (e.g. ``'model.u1'``).
        value: The value to check.
        low (float, optional): Lower bound; ``None``: unbounded.
        high (float, optional): Upper bound; ``None``: unbounded.
        inclusive (bool | tuple[bool, bool]): Whether the bounds are allowed, for both or
            ``(low, high)``.
        integer (bool): Require an integer (``2.0`` is not one).
        optional (bool): Let ``None`` through.

    Returns:
        int | float | None: ``value`` as an ``int`` (``integer``) or ``float``.

    Raises:
        ConfigValueError: If ``value`` is not a number (bools and strings are not), is NaN or
            infinite, is not an integer where one is needed, or is out of range.
    """
    if value is None and optional:
        return None
    inc = (inclusive, inclusive) if isinstance(inclusive, bool) else tuple(inclusive)
    bounds = '' if low is None and high is None else ' ' + _interval(low, high, inc)
    noun = 'an integer' if integer else 'a number'
    if not is_number(value) or integer and not isinstance(value, numbers.Integral):
        problem = f'{noun}{bounds}'
    elif not math.isfinite(value):
        problem = f'{"an integer" if integer else "a finite number"}{bounds}'
    elif low is not None and not (value >= low if inc[0] else value > low) or \
            high is not None and not (value <= high if inc[1] else value < high):
        problem = bounds.strip()
    else:
        return int(value) if integer else float(value)
    raise ConfigValueError(f'{name} must be {problem}{" or None" if optional else ""}, '
                           f'got {clip(value)}')


def check_choice(name: str, value: Any, choices: Sequence) -> Any:
    """Check that ``value`` is one of ``choices``; return it."""
    if not any(value == c and type(value) is type(c) for c in choices):
        raise ConfigValueError(f'{name} must be one of {", ".join(map(str, choices))}, '
                               f'got {clip(value)}')
    return value


def check_keys(name: str, given: Iterable[str], allowed: Iterable[str],
               what: str = 'a known key', fix: str = 'fix the key or remove it') -> None:
    """Raise for the first key of ``given`` not in ``allowed``.

    Args:
        name (str): Path of the dict holding the keys (``'model'``, ``'pipeline'``, ...).
        given (Iterable[str]): Its keys.
        allowed (Iterable[str]): The keys it may hold.
        what (str): What a key must be, for the message (``'an argument of BMAIU'``).
        fix (str): What to do, the message's end.
    """
    allowed = sorted(set(allowed))
    for key in given:
        if key not in allowed:
            path = f'{name}.{key}' if name else str(key)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f'did you mean {close[0]}? ' if close else ''
            raise ConfigValueError(
                f'{path} is not {what} ({hint}allowed: {", ".join(allowed) or "none"}); {fix}')


def check_finite(node: Any, path: str = '') -> None:
    """Raise for the first NaN or infinite number anywhere in a (nested) config value."""
    if isinstance(node, dict):
        for k, v in node.items():
            check_finite(v, f'{path}.{k}' if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            check_finite(v, f'{path}.{i}')
    elif is_number(node) and not math.isfinite(node):
        raise ConfigValueError(f'{path} is {node}, not a finite number; set it to a finite value')


def open_image(path: str, what: str = 'image'):
    """Open an image file as an RGB ``PIL.Image``, with one clear error if it is not one.

    Args:
        path (str): The file.
        what (str): What the image is for, for the message (``'trigger pattern'``, ...).

    Raises:
        ConfigValueError: The file does not exist or is not an image PIL can read.
    """
    import os.path as osp

    from PIL import Image, UnidentifiedImageError
    if not osp.isfile(path):
        raise ConfigValueError(f'{what} file not found: {path}')
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ConfigValueError(f'{what} file {path} is not a readable image '
                               f'({type(e).__name__}); give a PNG or JPEG file') from None


# ---- accepted keys of a registered component ---------------------------------------------
def _named_params(fn, skip_first: bool) -> Optional[Tuple[set, Optional[str]]]:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        return None
    if skip_first and params:
        params = params[1:]
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    return names, var_kw


def accepted_keys(obj: Any) -> Optional[frozenset]:
    """The keyword arguments a registered class or function accepts; ``None``: any.

    For a class, the named parameters of its ``__init__``.  A ``**kwargs`` of one of the
    plugin's own classes (and of the classes in :data:`FORWARDING`) is forwarded to its base
    classes, so their parameters are added along the MRO until an ``__init__`` without
    ``**kwargs`` (``object``'s takes none).  Any other ``**kwargs`` (a third-party class, or a
    plugin ``**options`` forwarded elsewhere) accepts every key.
    """
    if not inspect.isclass(obj):
        found = _named_params(obj, skip_first=False) if callable(obj) else None
        return None if found is None or found[1] else frozenset(found[0])
    plugin = obj.__module__.startswith('bmaiu_plugin.')
    names: set = set()
    for klass in obj.__mro__:
        if klass is object:
            return frozenset(names)
        init = klass.__dict__.get('__init__')
        if init is None:
            continue
        found = _named_params(init, skip_first=True)
        if found is None:
            return None
        names |= found[0]
        if found[1] is None:
            return frozenset(names)
        if not (plugin and found[1] == 'kwargs' or
                f'{klass.__module__}.{klass.__qualname__}' in FORWARDING):
            return None
    return frozenset(names)


# ---- the pre-flight walk -----------------------------------------------------------------
def _registries():
    from mmengine import registry as mme
    from mmpretrain import registry as mmp

    from ..registry import TRIGGERS
    regs = dict(model=mmp.MODELS, dataset=mmp.DATASETS, transform=mmp.TRANSFORMS,
                sampler=mmp.DATA_SAMPLERS, optimizer=mmp.OPTIMIZERS,
                optim_wrapper=mmp.OPTIM_WRAPPERS, scheduler=mmp.PARAM_SCHEDULERS,
                loop=mmp.LOOPS, hook=mmp.HOOKS, metric=mmp.METRICS, evaluator=mmp.EVALUATORS,
                visualizer=mmp.VISUALIZERS, vis_backend=mmp.VISBACKENDS,
                log_processor=mmp.LOG_PROCESSORS, model_wrapper=mmp.MODEL_WRAPPERS,
                function=mme.FUNCTIONS, trigger=TRIGGERS, batch_augment=mmp.BATCH_AUGMENTS,
                weight_initializer=mmp.WEIGHT_INITIALIZERS)
    return regs


#: The registry a nested dict is first looked up in, by the key holding it.
_KEY_KIND = {'dataset': 'dataset', 'datasets': 'dataset', 'pipeline': 'transform',
             'transforms': 'transform', 'sampler': 'sampler', 'batch_sampler': 'sampler',
             'optimizer': 'optimizer', 'trigger': 'trigger', 'custom_trigger': 'trigger',
             'triggers': 'trigger', 'data_preprocessor': 'model', 'vis_backends': 'vis_backend',
             'metrics': 'metric', 'collate_fn': 'function', 'worker_init_fn': 'function',
             'augments': 'batch_augment'}
#: Registries whose plugin components are cheap to build and are built once in pre-flight.
_TRIAL_KINDS = ('hook', 'trigger')
#: Keys the dataloader builder consumes besides ``torch.utils.data.DataLoader``'s arguments.
_DATALOADER_EXTRA = frozenset({'num_batch_per_epoch', 'disable_subprocess_warning'})


class _Walk:
    """One pass over a config; raises at the first problem."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.regs = _registries()

    # type resolution ------------------------------------------------------------------
    def resolve(self, path: str, typ: Any, kind: str):
        """``(object, kind of the registry it was found in)``; ``(None, kind)`` if opaque."""
        if not isinstance(typ, str):
            return (typ if callable(typ) else None), kind
        order = [kind] + [k for k in self.regs if k != kind]
        for k in order:
            obj = self.regs[k].get(typ)
            if obj is not None:
                return obj, k
        reg = self.regs[kind]
        names = set()
        while reg is not None:
            names |= set(reg.module_dict)
            reg = reg.parent
        close = difflib.get_close_matches(typ.split('.')[-1], sorted(names), n=3)
        hint = f' (did you mean {", ".join(close)}?)' if close else ''
        raise ConfigValueError(f'{path}.type={clip(typ)} is not a registered {kind} type{hint}; '
                               'fix the name, or import the module that registers it '
                               '(custom_imports)')

    # components -----------------------------------------------------------------------
    def component(self, path: str, node: dict, kind: str, default_type: Any = None,
                  extra: Iterable[str] = ()) -> None:
        """Check a dict mmengine builds with ``type`` (or ``default_type``) from ``kind``."""
        typ = node.get('type', default_type)
        obj, found = self.resolve(path, typ, kind)
        if obj is None:
            return
        allowed = accepted_keys(obj)
        owner = getattr(obj, '__name__', str(typ))
        if allowed is not None:
            check_keys(path, [k for k in node if k not in BUILD_KEYS],
                       allowed | frozenset(extra), f'an argument of {owner}')
        self.args(path, node, kind)
        if not inspect.isclass(obj):
            return
        if callable(getattr(obj, 'check_cfg', None)):
            obj.check_cfg(node, self.cfg, path)
        if found in _TRIAL_KINDS and obj.__module__.startswith('bmaiu_plugin.'):
            try:
                obj(**{k: v for k, v in node.items() if k not in BUILD_KEYS | set(extra)})
            except TypeError as e:  # a required argument missing
                raise ConfigValueError(f'{path}: {e}; give it in the config') from None

    def args(self, path: str, node: dict, kind: str) -> None:
        for key, value in node.items():
            if key not in BUILD_KEYS:
                self.value(f'{path}.{key}', value, _KEY_KIND.get(key, kind), key)

    def value(self, path: str, value: Any, kind: str, key: str) -> None:
        """Walk an argument value: nested components, dataloaders, lists."""
        if key.endswith(('_cfg', '_cfgs')):
            return  # norm_cfg, act_cfg, init_cfg, ...: read by helpers, not registry builds
        if isinstance(value, dict):
            if key == 'dataloader' or key.endswith('_dataloader'):
                self.dataloader(path, value)
            elif 'type' in value:
                self.component(path, value, kind)
            else:
                self.args(path, value, kind)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                self.value(f'{path}.{i}', v, kind, key)

    def dataloader(self, path: str, node: dict) -> None:
        from torch.utils.data import DataLoader
        if 'type' in node:  # a custom dataloader class
            return self.component(path, node, 'dataset')
        check_keys(path, node, accepted_keys(DataLoader) | _DATALOADER_EXTRA,
                   'a dataloader key')
        if 'batch_size' in node:
            check_number(f'{path}.batch_size', node['batch_size'], 1, integer=True)
        if 'num_workers' in node:
            check_number(f'{path}.num_workers', node['num_workers'], 0, integer=True)
        for key, kind in (('dataset', 'dataset'), ('sampler', 'sampler'),
                          ('batch_sampler', 'sampler')):
            if isinstance(node.get(key), dict):
                self.component(f'{path}.{key}', node[key], kind)
        for key in ('collate_fn', 'worker_init_fn'):
            if isinstance(node.get(key), dict):
                self.component(f'{path}.{key}', node[key], 'function')

    # sections -------------------------------------------------------------------------
    def run(self) -> None:
        cfg = self.cfg
        check_finite(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
        for key in ('model', 'data_preprocessor'):
            if isinstance(cfg.get(key), dict):
                self.component(key, cfg[key], 'model')
        if isinstance(cfg.get('model_wrapper_cfg'), dict):
            self.component('model_wrapper_cfg', cfg.model_wrapper_cfg, 'model_wrapper',
                           'MMDistributedDataParallel', extra=('module',))
        self.optim_wrapper('optim_wrapper', cfg.get('optim_wrapper'))
        self.schedulers('param_scheduler', cfg.get('param_scheduler'))
        self.train_loop(cfg.get('train_cfg'))
        for key, default in (('val_cfg', 'ValLoop'), ('test_cfg', 'TestLoop')):
            if isinstance(cfg.get(key), dict):
                self.component(key, cfg[key], 'loop', default)
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if isinstance(cfg.get(key), dict):
                self.dataloader(key, cfg[key])
        for key in ('val_evaluator', 'test_evaluator'):
            self.evaluator(key, cfg.get(key))
        for name, hook in (cfg.get('default_hooks') or {}).items():
            if isinstance(hook, dict):
                self.component(f'default_hooks.{name}', hook, 'hook', extra=('priority',))
        for i, hook in enumerate(cfg.get('custom_hooks') or []):
            if isinstance(hook, dict):
                self.component(f'custom_hooks.{i}', hook, 'hook', extra=('priority',))
        if isinstance(cfg.get('visualizer'), dict):
            self.component('visualizer', cfg.visualizer, 'visualizer')
        if isinstance(cfg.get('log_processor'), dict):
            self.component('log_processor', cfg.log_processor, 'log_processor', 'LogProcessor')

    def optim_wrapper(self, path: str, node: Any) -> None:
        if not isinstance(node, dict):
            return
        if 'optimizer' not in node and 'constructor' not in node and 'type' not in node:
            for name, sub in node.items():  # several optimizers, one wrapper each
                self.optim_wrapper(f'{path}.{name}', sub)
            return
        if node.get('constructor', 'DefaultOptimWrapperConstructor') == \
                'DefaultOptimWrapperConstructor':
            wrapper = {k: v for k, v in node.items() if k != 'optimizer'}
            self.component(path, wrapper, 'optim_wrapper', 'OptimWrapper',
                           extra=('constructor', 'paramwise_cfg', 'optimizer'))
        opt = node.get('optimizer')
        if isinstance(opt, dict):
            self.component(f'{path}.optimizer', opt, 'optimizer')
            for key, low, high, inc in (('lr', 0, None, True), ('weight_decay', 0, None, True),
                                        ('momentum', 0, 1, True), ('eps', 0, None, False)):
                if key in opt:
                    check_number(f'{path}.optimizer.{key}', opt[key], low, high, inclusive=inc)

    def schedulers(self, path: str, node: Any) -> None:
        if isinstance(node, dict) and 'type' not in node:  # one list per optimizer
            for name, sub in node.items():
                self.schedulers(f'{path}.{name}', sub)
            return
        for i, sch in enumerate([node] if isinstance(node, dict) else node or []):
            if not isinstance(sch, dict):
                continue
            p = f'{path}.{i}' if not isinstance(node, dict) else path
            self.component(p, sch, 'scheduler', extra=('convert_to_iter_based', 'epoch_length'))
            if 'T_max' in sch:
                check_number(f'{p}.T_max', sch['T_max'], 1, integer=True)
            begin, end = sch.get('begin', 0), sch.get('end')
            if is_number(begin) and is_number(end) and end <= begin:
                raise ConfigValueError(f'{p}: end={end} must be larger than begin={begin}')

    def train_loop(self, node: Any) -> None:
        if not isinstance(node, dict):
            return
        default = 'EpochBasedTrainLoop' if node.get('by_epoch', True) else 'IterBasedTrainLoop'
        extra = () if 'type' in node else ('by_epoch',)
        self.component('train_cfg', node, 'loop', default, extra=extra)
        for key in ('max_epochs', 'max_iters', 'val_interval', 'val_begin'):
            if key in node:
                check_number(f'train_cfg.{key}', node[key], 0 if key == 'val_begin' else 1,
                             integer=True)

    def evaluator(self, path: str, node: Any) -> None:
        if isinstance(node, dict) and 'type' not in node and 'metrics' in node:
            self.component(path, node, 'evaluator', 'Evaluator')
        elif isinstance(node, dict):
            self.component(path, node, 'metric')
        elif isinstance(node, (list, tuple)):
            for i, m in enumerate(node):
                if isinstance(m, dict):
                    self.component(f'{path}.{i}', m, 'metric')


def check_config(cfg) -> None:
    """Pre-flight check of a training / test config (see the module docstring).

    Args:
        cfg (Config | dict): The merged config, as the runner would get it.

    Raises:
        ConfigValueError: At the first value, key or type that cannot work.
    """
    _Walk(cfg).run()
