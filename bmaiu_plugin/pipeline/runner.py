"""Expand a pipeline config into steps and run each as its own process.

A pipeline config (an mmengine ``Config`` python file, see ``docs/pipeline.md``) declares SSL
methods, attacks, defenses, studies (which of them to combine, and in which table shape to
report them) and per-kind ``--cfg-options`` (the scale knobs).  :func:`expand` turns it into an
ordered list of :class:`Step` s:

* ``<ssl>/clean/none``: clean SSL pretraining (``tools/train.py``), or, for an SSL method given
  as an existing checkpoint, a probe of it (``tools/test.py`` with the evaluation config);
* ``<ssl>/<attack>/none``: the attack: poisoned pretraining, or fine-tuning of the clean encoder;
  its own probe (``metrics.json``) is the "no defense" result;
* ``<ssl>/<attack>/<defense>``: a defense of the attacked encoder, with its probe of the suspect
  and defended encoders.

Every step runs in ``<work_dir>/<ssl>/<attack>/<defense>/`` with its output in ``step.log``.
A step that finished writes ``pipeline_step.json`` there; a later run skips it while that record
and the outputs it names exist, so an interrupted pipeline resumes (an interrupted training step
restarts from its last checkpoint with ``--resume``).  A finished training step that runs again
(its input step ran again) starts anew, after its earlier checkpoints are moved into a folder
beside them; nothing is deleted.  A failing step is recorded with its log; the steps that need
its checkpoint are skipped and every other step still runs.
"""
import fnmatch
import json
import os
import os.path as osp
import queue
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

from mmengine.config import Config

from ..engine.results import latest_checkpoint, set_aside, set_aside_training
from ..utils.errors import ConfigValueError
from ..utils.validate import check_keys
from .progress import ProgressReporter, headline, hms
from .report import TRIGGER_METRICS, load_metrics

#: Attack name of the clean-encoder steps and defense name of the undefended ones.
CLEAN = 'clean'
NONE = 'none'
#: The record a finished step leaves in its work dir.
MARKER = 'pipeline_step.json'
#: The combined stdout/stderr of a step.
LOG = 'step.log'
METRICS = 'metrics.json'
#: The encoder file a test-tool defense (CLP) saves, recorded as its checkpoint when present.
DEFENDED_ENCODER = 'defended_encoder.pth'
#: Step kinds; ``options`` in a pipeline config may hold one entry per kind, plus ``'all'``.
KINDS = ('pretrain', 'poison', 'attack', 'defense', 'eval')
ATTACK_TYPES = ('finetune', 'poison')
TOOLS = ('train', 'test')
#: Table shapes a study may ask for (see :mod:`bmaiu_plugin.pipeline.report`).
TABLES = ('grid', 'per_target', 'rows')
#: Lines of a step's output echoed to the console while it runs.
PROGRESS_MARKS = ('Epoch(', 'error:', 'Error', 'metrics written')

_SSL_KEYS = {'config', 'checkpoint', 'cfg_options', 'downstream_options', 'name'}
_ATTACK_KEYS = {'type', 'config', 'evaluate', 'cfg_options', 'name'}
_DEFENSE_KEYS = {'config', 'tool', 'cfg_options', 'name'}
_STUDY_KEYS = {'title', 'table', 'ssl', 'attacks', 'defenses', 'metrics', 'row_label', 'extra',
               'sweep'}
#: Top-level keys of a pipeline config; names starting with ``_`` are the file's own helper
#: variables (``_budget = {...}`` used in ``options``) and are not read.
TOP_KEYS = {'title', 'work_dir', 'python', 'options', 'ssl', 'attacks', 'defenses',
            'evaluation', 'studies', 'figures', 'estimates', 'seeds'}
_EVALUATION_KEYS = {'clean', 'config', 'cfg_options'}
_FIGURE_KEYS = {'tsne'}
_TSNE_KEYS = {'defenses', 'num_images', 'seed', 'data_root'}


# ------------------------------------------------------------------------------------------
# --cfg-options formatting
# ------------------------------------------------------------------------------------------
def _format_value(value: Any, key: str) -> str:
    """One ``--cfg-options`` value as mmengine's ``DictAction`` parses it back."""
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if not value or any(c in value for c in ',[]()"\''):
            raise ConfigValueError(
                f'--cfg-options {key}={value!r}: a string value must be non-empty and hold no '
                'commas, brackets or quotes (DictAction would split it)')
        return value
    if isinstance(value, (list, tuple)):
        inner = ','.join(_format_value(v, key) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    raise ConfigValueError(f'--cfg-options {key}: cannot pass a {type(value).__name__} on the '
                           'command line')


def flatten_options(options: Optional[dict], prefix: str = '') -> Dict[str, Any]:
    """Nested or dotted option dicts to ``{'a.b.c': value}`` (insertion order kept).

    Args:
        options (dict, optional): ``{'model.u2': 0.}`` or ``dict(model=dict(u2=0.))``.
        prefix (str): Key prefix (recursion).

    Returns:
        dict: Dotted keys to leaf values.
    """
    out: Dict[str, Any] = {}
    for k, v in (options or {}).items():
        key = f'{prefix}{k}'
        if isinstance(v, dict):
            out.update(flatten_options(v, key + '.'))
        else:
            out[key] = v
    return out


def options_to_args(options: Dict[str, Any]) -> List[str]:
    """``{'a.b': 1}`` to ``['a.b=1', ...]`` for ``--cfg-options``."""
    return [f'{k}={_format_value(v, k)}' for k, v in options.items()]


# ------------------------------------------------------------------------------------------
# the plan
# ------------------------------------------------------------------------------------------
@dataclass
class Step:
    """One mmengine run of the pipeline.

    Attributes:
        ssl (str): SSL method name (a key of the config's ``ssl``).
        attack (str): Attack name, or :data:`CLEAN`.
        defense (str): Defense name, or :data:`NONE`.
        kind (str): One of :data:`KINDS`.
        tool (str): ``'train'`` or ``'test'`` (``tools/<tool>.py``).
        config (str): The mmengine config the step runs.
        work_dir (str): The step's own work dir.
        cfg_options (dict): ``--cfg-options`` (dotted keys), without the upstream checkpoint.
        upstream (str, optional): Name of the step whose checkpoint this one starts from.
        encoder (str, optional): A fixed encoder file to start from (an SSL method given as a
            checkpoint).
        evaluate (str | list, optional): The evaluator's attack preset(s) (``evaluate_attack``).
        seed (int, optional): The replicate's seed (``randomness.seed`` of the run) when the
            pipeline has ``seeds``; ``None`` otherwise.
    """
    ssl: str
    attack: str
    defense: str
    kind: str
    tool: str
    config: str
    work_dir: str
    cfg_options: Dict[str, Any] = field(default_factory=dict)
    upstream: Optional[str] = None
    encoder: Optional[str] = None
    evaluate: Any = None
    seed: Optional[int] = None

    @property
    def cell(self) -> str:
        """``<ssl>/<attack>/<defense>``: the table cell the step fills."""
        return f'{self.ssl}/{self.attack}/{self.defense}'

    @property
    def name(self) -> str:
        """``<ssl>/<attack>/<defense>``, or ``seed<k>/<ssl>/<attack>/<defense>`` in a pipeline
        with ``seeds`` (the step's work dir below the pipeline's)."""
        return self.cell if self.seed is None else f'seed{self.seed}/{self.cell}'

    @property
    def log_file(self) -> str:
        return osp.join(self.work_dir, LOG)

    @property
    def marker_file(self) -> str:
        return osp.join(self.work_dir, MARKER)

    @property
    def metrics_file(self) -> str:
        return osp.join(self.work_dir, METRICS)

    @property
    def provides_checkpoint(self) -> bool:
        """Train steps leave an encoder checkpoint behind (the input of later steps)."""
        return self.tool == 'train'

    def command(self, python: str, tools_dir: str, encoder: Optional[str],
                resume: bool = False) -> List[str]:
        """The command line of the step.

        Args:
            python (str): Interpreter.
            tools_dir (str): Folder holding ``train.py`` and ``test.py``.
            encoder (str, optional): The input encoder file (upstream checkpoint or fixed).
            resume (bool): Add ``--resume`` (an interrupted training step).

        Returns:
            list[str]: The argv.
        """
        cmd = [python, osp.join(tools_dir, f'{self.tool}.py'), self.config]
        opts = dict(self.cfg_options)
        if self.tool == 'test' and encoder is not None:
            cmd.append(encoder)
        elif encoder is not None:
            opts['encoder_checkpoint'] = encoder
        cmd += ['--work-dir', self.work_dir]
        if resume and self.tool == 'train':
            cmd.append('--resume')
        if opts:
            cmd += ['--cfg-options'] + options_to_args(opts)
        return cmd


def _check_keys(what: str, entry: dict, allowed: set) -> None:
    check_keys(what, entry, allowed, f'a key of a pipeline {what.split(".")[0]} entry')


def _names(value, available: Sequence[str], what: str) -> List[str]:
    if value is None:
        return list(available)
    value = [value] if isinstance(value, str) else list(value)
    missing = [v for v in value if v not in available]
    if missing:
        raise ConfigValueError(f'{what} {missing} not declared (declared: {list(available)})')
    return value


def package_root() -> str:
    """The folder holding ``configs/`` and ``tools/``: the repository, or the installed
    package's ``.mim`` folder."""
    here = osp.dirname(osp.dirname(osp.realpath(__file__)))
    mim = osp.join(here, '.mim')
    if osp.isdir(osp.join(mim, 'tools')):
        return osp.realpath(mim)
    return osp.dirname(here)


def default_tools_dir() -> str:
    """The plugin's ``tools/`` (relative to the working directory when below it)."""
    tools = osp.realpath(osp.join(package_root(), 'tools'))
    rel = osp.relpath(tools)
    return tools if rel.startswith('..') else rel


def resolve_path(path: str) -> str:
    """A config path as given if it exists, else relative to :func:`package_root`.

    Paths that exist nowhere are returned as given (the step then fails with a clear message).
    """
    if osp.exists(path) or osp.isabs(path):
        return path
    candidate = osp.join(package_root(), path)
    return candidate if osp.exists(candidate) else path


def studies_of(cfg: Config) -> Dict[str, dict]:
    """The config's studies (``studies``), or one ``grid`` study over everything declared."""
    studies = cfg.get('studies', None)
    if not studies:
        return {'main': dict(title='All runs', table='grid')}
    return {k: dict(v) for k, v in studies.items()}


def check_config(cfg: Config) -> None:
    """Raise :class:`ConfigValueError` for a malformed pipeline config."""
    check_keys('', [k for k in cfg if not str(k).startswith('_')], TOP_KEYS,
               'a top-level key of a pipeline config',
               fix='fix the key, or start a helper variable\'s name with _')
    seeds_of(cfg)
    for key, allowed in (('evaluation', _EVALUATION_KEYS), ('figures', _FIGURE_KEYS)):
        if isinstance(cfg.get(key), dict):
            check_keys(key, cfg[key], allowed, f'a key of a pipeline\'s {key}')
    tsne = (cfg.get('figures') or {}).get('tsne')
    if isinstance(tsne, dict):
        check_keys('figures.tsne', tsne, _TSNE_KEYS, 'a t-SNE figure setting')
    for key in ('ssl', 'attacks'):
        if not cfg.get(key):
            raise ConfigValueError(f'pipeline config: `{key}` is empty or missing')
    for name, s in cfg.ssl.items():
        _check_keys(f'ssl.{name}', s, _SSL_KEYS)
        if not s.get('config') and not s.get('checkpoint'):
            raise ConfigValueError(f'ssl.{name}: give `config` (to pretrain) or `checkpoint`')
    for name, a in cfg.attacks.items():
        _check_keys(f'attacks.{name}', a, _ATTACK_KEYS)
        if a.get('type') not in ATTACK_TYPES:
            raise ConfigValueError(f'attacks.{name}.type must be one of {ATTACK_TYPES}')
        if not a.get('config') or not a.get('evaluate'):
            raise ConfigValueError(f'attacks.{name}: `config` and `evaluate` are required')
        if name in (CLEAN, NONE):
            raise ConfigValueError(f'attacks: {name!r} is a reserved name')
    for name, d in (cfg.get('defenses') or {}).items():
        _check_keys(f'defenses.{name}', d, _DEFENSE_KEYS)
        if d.get('tool', 'train') not in TOOLS or not d.get('config'):
            raise ConfigValueError(f'defenses.{name}: `config` and `tool` in {TOOLS} required')
        if name == NONE:
            raise ConfigValueError(f'defenses: {name!r} is a reserved name')
    for kind in (cfg.get('options') or {}):
        if kind not in KINDS + ('all',):
            raise ConfigValueError(f'options.{kind}: not a step kind ({KINDS + ("all",)})')
    for name, st in studies_of(cfg).items():
        _check_keys(f'studies.{name}', st, _STUDY_KEYS)
        if st.get('table', 'grid') not in TABLES:
            raise ConfigValueError(f'studies.{name}.table must be one of {TABLES}')
        metrics = st.get('metrics') or ()
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        if st.get('table', 'grid') == 'per_target' and not set(metrics) <= set(TRIGGER_METRICS):
            raise ConfigValueError(f'studies.{name}.metrics {metrics}: a per_target table shows '
                                   f'{list(TRIGGER_METRICS)}')


def _attack_config(attack: dict, ssl: str, name: str) -> str:
    conf = attack['config']
    if isinstance(conf, str):
        return conf
    if ssl not in conf:
        raise ConfigValueError(f'attacks.{name}.config has no entry for SSL method {ssl!r}')
    return conf[ssl]


def grid_cells(cfg: Config) -> List[Tuple[str, str, str]]:
    """The ``(ssl, attack, defense)`` cells the studies ask for, in declaration order.

    Each study contributes its ``ssl x attacks x ({'none'} + defenses)`` cells; a cell shared by
    several studies is run once.
    """
    ssl_all, att_all = list(cfg.ssl), list(cfg.attacks)
    def_all = list(cfg.get('defenses') or {})
    wanted = set()
    for name, st in studies_of(cfg).items():
        for s in _names(st.get('ssl'), ssl_all, f'studies.{name}.ssl'):
            for a in _names(st.get('attacks'), att_all, f'studies.{name}.attacks'):
                wanted.add((s, a, NONE))
                for d in _names(st.get('defenses'), def_all, f'studies.{name}.defenses'):
                    wanted.add((s, a, d))
    return [(s, a, d) for s in ssl_all for a in att_all for d in [NONE] + def_all
            if (s, a, d) in wanted]


def seeds_of(cfg: Config) -> Optional[List[int]]:
    """The pipeline's ``seeds`` (distinct integers >= 0), or ``None`` when it has none."""
    seeds = cfg.get('seeds', None)
    if seeds is None:
        return None
    seeds = [seeds] if isinstance(seeds, int) and not isinstance(seeds, bool) else seeds
    if (not isinstance(seeds, (list, tuple)) or not seeds
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ConfigValueError(f'seeds must be a non-empty list of distinct integers >= 0, got '
                               f'{seeds!r}; e.g. seeds=[0, 1, 2]')
    return list(seeds)


def expand(cfg: Config, work_dir: Optional[str] = None) -> List[Step]:
    """Expand a pipeline config into its ordered steps.

    Order: for each SSL method (declaration order) its clean step, then each attack, each
    followed by its defenses (declaration order).  The same config always gives the same plan.
    With ``seeds = [k, ...]`` the whole plan is run once per seed, in ``<work_dir>/seed<k>/``,
    seed by seed: every step with ``randomness.seed=k`` and its model's own ``seed`` (a
    defense's: also its trigger's and search's) offset by ``k``, so seed 0 is the plan's single
    run; the tables then show the mean and spread over the seeds.

    Args:
        cfg (Config): The pipeline config.
        work_dir (str, optional): Root work dir; defaults to the config's ``work_dir``.

    Returns:
        list[Step]: The steps.
    """
    check_config(cfg)
    root = work_dir or cfg.get('work_dir') or osp.join('work_dirs', 'pipeline')
    seeds = seeds_of(cfg)
    if seeds is None:
        return _expand_replicate(cfg, root)
    steps: List[Step] = []
    model_seeds: Dict[Tuple[str, str], Dict[str, int]] = {}
    for seed in seeds:
        for step in _expand_replicate(cfg, osp.join(root, f'seed{seed}')):
            step.seed = seed
            key = (step.config, step.kind)
            if key not in model_seeds:
                model_seeds[key] = _model_seeds(step.config, step.kind == 'defense')
            for k, base in model_seeds[key].items():
                step.cfg_options[k] = int(step.cfg_options.get(k, base)) + seed
            step.cfg_options['randomness.seed'] = seed
            if step.upstream:
                step.upstream = f'seed{seed}/{step.upstream}'
            steps.append(step)
    return steps


def _model_seeds(config: str, nested: bool) -> Dict[str, int]:
    """``{'model.seed': 0, ...}``: the integer ``seed`` keys of a step config's model (with
    ``nested``, those of its sub-dicts too: a defense's own trigger and search), which a seed
    replicate offsets by its seed.  The attacker's trigger seeds are never among them: the
    evaluator's preset must keep matching the attack."""
    try:
        model = Config.fromfile(config).get('model')
    except Exception:  # noqa: BLE001  (a missing or broken config fails as its step)
        return {}
    out: Dict[str, int] = {}

    def walk(node, prefix):
        for k, v in node.items():
            if k == 'seed' and isinstance(v, int) and not isinstance(v, bool):
                out[prefix + k] = v
            elif nested and isinstance(v, dict):
                walk(v, f'{prefix}{k}.')
    if isinstance(model, dict):
        walk(model, 'model.')
    return out


def _expand_replicate(cfg: Config, root: str) -> List[Step]:
    """The plan of one replicate (see :func:`expand`), in ``root``."""
    options = cfg.get('options') or {}
    opt = {k: flatten_options(options.get(k)) for k in KINDS + ('all',)}
    evaluation = cfg.get('evaluation') or {}
    cells = grid_cells(cfg)
    steps: List[Step] = []

    def layered(*layers) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for layer in layers:
            out.update(flatten_options(layer))
        return out

    for ssl_name, ssl in cfg.ssl.items():
        mine = [c for c in cells if c[0] == ssl_name]
        if not mine:
            continue
        attacks = [a for a in cfg.attacks if (ssl_name, a, NONE) in mine]
        presets = []
        for a in attacks:
            ev = cfg.attacks[a]['evaluate']
            presets += [ev] if isinstance(ev, str) else list(ev)
        clean_eval = bool(evaluation.get('clean', True))
        needs_clean = clean_eval or any(cfg.attacks[a]['type'] == 'finetune' for a in attacks)
        down = ssl.get('downstream_options')
        clean_name = None
        if needs_clean and ssl.get('checkpoint'):
            if clean_eval and evaluation.get('config'):
                steps.append(Step(
                    ssl_name, CLEAN, NONE, 'eval', 'test', resolve_path(evaluation['config']),
                    osp.join(root, ssl_name, CLEAN, NONE),
                    layered(opt['all'], opt['eval'], down, evaluation.get('cfg_options'),
                            dict(evaluate_attack=presets or None)),
                    encoder=ssl['checkpoint'], evaluate=presets))
        elif needs_clean:
            clean_opts = layered(opt['all'], opt['pretrain'], ssl.get('cfg_options'))
            if clean_eval and presets:
                clean_opts['evaluate_attack'] = presets
            step = Step(ssl_name, CLEAN, NONE, 'pretrain', 'train', resolve_path(ssl['config']),
                        osp.join(root, ssl_name, CLEAN, NONE), clean_opts, evaluate=presets)
            steps.append(step)
            clean_name = step.name
        for a in attacks:
            att = cfg.attacks[a]
            finetune = att['type'] == 'finetune'
            kind = 'attack' if finetune else 'poison'
            step = Step(
                ssl_name, a, NONE, kind, 'train', resolve_path(_attack_config(att, ssl_name, a)),
                osp.join(root, ssl_name, a, NONE),
                layered(opt['all'], opt[kind], down, att.get('cfg_options'),
                        dict(evaluate_attack=att['evaluate'])),
                upstream=clean_name if finetune else None,
                encoder=ssl.get('checkpoint') if finetune else None, evaluate=att['evaluate'])
            if finetune and clean_name is None and not ssl.get('checkpoint'):
                raise ConfigValueError(f'attack {a} fine-tunes a clean {ssl_name} encoder, '
                                       'but there is none')
            steps.append(step)
            for d, dfn in (cfg.get('defenses') or {}).items():
                if (ssl_name, a, d) not in mine:
                    continue
                steps.append(Step(
                    ssl_name, a, d, 'defense', dfn.get('tool', 'train'),
                    resolve_path(dfn['config']), osp.join(root, ssl_name, a, d),
                    layered(opt['all'], opt['defense'], down, dfn.get('cfg_options'),
                            dict(evaluate_attack=att['evaluate'])),
                    upstream=step.name, evaluate=att['evaluate']))
    return steps


def select(steps: List[Step], patterns: Optional[Iterable[str]]) -> List[Step]:
    """Steps whose names match any glob in ``patterns``, plus the steps they depend on.

    In a pipeline with ``seeds`` a glob may name the cell (``simclr/badencoder/*``: every seed)
    or the step (``seed1/simclr/badencoder/*``)."""
    if not patterns:
        return steps
    patterns = list(patterns)
    by_name = {s.name: s for s in steps}
    keep = set()
    for s in steps:
        if any(fnmatch.fnmatchcase(s.name, p) or fnmatch.fnmatchcase(s.cell, p)
               for p in patterns):
            cur: Optional[Step] = s
            while cur is not None and cur.name not in keep:
                keep.add(cur.name)
                cur = by_name.get(cur.upstream) if cur.upstream else None
    return [s for s in steps if s.name in keep]


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------
def read_marker(step: Step) -> Optional[dict]:
    """The step's record, or ``None`` if absent or unreadable."""
    try:
        with open(step.marker_file) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def is_done(step: Step) -> bool:
    """A step is done when its record says so and the outputs it names exist."""
    rec = read_marker(step)
    if not rec or rec.get('status') != 'done':
        return False
    if not osp.isfile(step.metrics_file):
        return False
    if step.provides_checkpoint:
        return bool(rec.get('checkpoint')) and osp.isfile(rec['checkpoint'])
    return True


def step_checkpoint(step: Step) -> Optional[str]:
    """The checkpoint a finished training step left (from its record)."""
    rec = read_marker(step)
    return rec.get('checkpoint') if rec else None


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The file named by mmengine's ``last_checkpoint`` in ``work_dir``, if it exists."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        ckpt = f.read().strip()
    if ckpt and not osp.isabs(ckpt) and not osp.isfile(ckpt):
        ckpt = osp.join(work_dir, osp.basename(ckpt))
    return osp.abspath(ckpt) if ckpt and osp.isfile(ckpt) else None


@dataclass
class StepResult:
    """What happened to a step in one pipeline invocation.

    Attributes:
        step (Step): The step.
        status (str): ``'done'`` (ran now), ``'cached'`` (done earlier), ``'failed'`` or
            ``'skipped'`` (an upstream step failed or was skipped).
        elapsed (float): Seconds spent now.
        message (str): Why it failed or was skipped.
    """
    step: Step
    status: str
    elapsed: float = 0.
    message: str = ''


class PipelineRunner:
    """Run the steps of a pipeline in order, each as a subprocess.

    Args:
        steps (list[Step]): The plan (:func:`expand`).
        python (str, optional): Interpreter of the steps; defaults to this one.
        tools_dir (str, optional): Folder holding ``train.py`` / ``test.py``; defaults to the
            plugin's ``tools/``.
        stream (TextIO, optional): Where progress goes; defaults to stdout.
        env (dict, optional): Extra environment variables of the steps.
        clock (callable): Time source (seconds), for tests.
        estimates (dict, optional): ``{step-name glob: seconds}`` for the plan's ETA
            (:class:`~bmaiu_plugin.pipeline.progress.ProgressReporter`).
        interval (float, optional): Seconds between status lines (default: 1 on a terminal,
            30 elsewhere).
    """

    def __init__(self, steps: List[Step], python: Optional[str] = None,
                 tools_dir: Optional[str] = None, stream: Optional[TextIO] = None,
                 env: Optional[Dict[str, str]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 estimates: Optional[Dict[str, float]] = None,
                 interval: Optional[float] = None):
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ConfigValueError(f'duplicate step names in the plan: {names}')
        self.steps = steps
        self.python = python or sys.executable
        self.tools_dir = tools_dir or default_tools_dir()
        self.stream = stream or sys.stdout
        self.env = env or {}
        self.clock = clock
        self.progress = ProgressReporter(steps, self.stream, clock, estimates, interval)

    def _print(self, msg: str) -> None:
        self.progress.print(msg)

    def _input_encoder(self, step: Step) -> Optional[str]:
        if step.upstream:
            up = next(s for s in self.steps if s.name == step.upstream)
            return step_checkpoint(up)
        return step.encoder

    def describe(self) -> List[str]:
        """The plan as text: one block per step with its status and command."""
        lines = [f'pipeline: {len(self.steps)} steps']
        for i, s in enumerate(self.steps, 1):
            state = 'done' if is_done(s) else 'to run'
            if not osp.exists(s.config):
                state += ', CONFIG MISSING'
            enc = self._input_encoder(s)
            if s.upstream and enc is None:
                enc = f'<checkpoint of {s.upstream}>'
            cmd = s.command(self.python, self.tools_dir, enc)
            after = f'  after {s.upstream}' if s.upstream else ''
            lines.append(f'[{i:>{len(str(len(self.steps)))}}/{len(self.steps)}] {s.name}  '
                         f'({s.kind}, {s.tool}, {state}){after}')
            lines.append('    ' + shlex.join(cmd))
        return lines

    def run(self) -> List[StepResult]:
        """Run every step not yet done; return one result per step (plan order).

        A step runs when it has no finished record, or when the step it starts from ran in
        this invocation (its input changed).  A step whose upstream failed or was skipped is
        skipped.
        """
        start = self.clock()
        results: Dict[str, StepResult] = {}
        n = len(self.steps)
        width = len(str(n))
        done_before = {s.name for s in self.steps if is_done(s)}
        self.progress.begin([s.name for s in self.steps if s.name not in done_before])
        self._print(f'[pipeline] {n} steps: {len(done_before)} done earlier, '
                    f'{n - len(done_before)} to run')
        for i, step in enumerate(self.steps, 1):
            tag = f'[{i:>{width}}/{n}] {step.name}'
            up = results.get(step.upstream) if step.upstream else None
            if up is not None and up.status in ('failed', 'skipped'):
                results[step.name] = StepResult(step, 'skipped',
                                                message=f'upstream {step.upstream} {up.status}')
                self._print(f'{tag}: skipped (upstream {step.upstream} {up.status})')
                continue
            if step.name in done_before and not (up is not None and up.status == 'done'):
                results[step.name] = StepResult(step, 'cached')
                self._print(f'{tag}: done earlier, skipped ({step.work_dir})')
                continue
            left = [s.name for s in self.steps[i:] if s.name not in done_before]
            self._print(f'{tag} ({step.kind}) starting; elapsed {hms(self.clock() - start)}; '
                        f'{len(left)} more to run after it'
                        + (f': {", ".join(left[:4])}{" ..." if len(left) > 4 else ""}'
                           if left else ''))
            self.progress.step_started(step, tag)
            res = self._run_step(step, tag)
            self.progress.step_finished(step, res.elapsed)
            results[step.name] = res
            if res.status == 'done':
                summary = headline(load_metrics(step.metrics_file))
                self._print(f'{tag}: done in {hms(res.elapsed)}'
                            + (f': {summary}' if summary else ''))
            else:
                self._print(f'{tag}: FAILED after {hms(res.elapsed)}: {res.message} '
                            f'(log: {step.log_file})')
        out = [results[s.name] for s in self.steps]
        counts = {k: sum(r.status == k for r in out) for k in ('done', 'cached', 'failed',
                                                                'skipped')}
        self._print(f'[pipeline] finished in {hms(self.clock() - start)}: '
                    + ', '.join(f'{v} {k}' for k, v in counts.items()))
        for r in out:
            if r.status == 'failed':
                self._print(f'  failed: {r.step.name}: {r.message} (log: {r.step.log_file})')
            elif r.status == 'skipped':
                self._print(f'  skipped: {r.step.name}: {r.message}')
        return out

    def _follow(self, proc: subprocess.Popen, log: TextIO, tag: str) -> int:
        """Copy the step's output to its log, echo the marked lines, show the status line
        at least every ``interval`` seconds while it runs; return its exit status."""
        lines: 'queue.Queue[Optional[str]]' = queue.Queue()

        def read():
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while True:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                self.progress.tick()
                continue
            if line is None:
                break
            log.write(line)
            self.progress.line(line)
            if any(m in line for m in PROGRESS_MARKS):
                text = line.strip()
                if ' - mmengine - INFO - ' in text:
                    text = text.split(' - mmengine - INFO - ', 1)[1]
                self._print(f'    {tag}: {text[:160]}')
            self.progress.tick()
        reader.join()
        return proc.wait()

    def _write_marker(self, step: Step, record: dict) -> None:
        with open(step.marker_file, 'w') as f:
            json.dump(record, f, indent=2)

    def _fail(self, step: Step, log: TextIO, t0: float, cmd: List[str], rc: Optional[int],
              message: str) -> StepResult:
        log.write(f'[pipeline] step failed: {message}\n')
        elapsed = self.clock() - t0
        self._write_marker(step, dict(name=step.name, status='failed', command=cmd,
                                      returncode=rc, message=message, log=step.log_file,
                                      elapsed_s=round(elapsed, 1)))
        return StepResult(step, 'failed', elapsed, message)

    def _run_step(self, step: Step, tag: str) -> StepResult:
        os.makedirs(step.work_dir, exist_ok=True)
        t0 = self.clock()
        encoder = self._input_encoder(step)
        # an interrupted or failed training step continues from its last checkpoint; one that
        # finished earlier runs again because its input changed: it starts anew
        trained = step.provides_checkpoint and latest_checkpoint(step.work_dir) is not None
        finished = (read_marker(step) or {}).get('status') == 'done'
        cmd = step.command(self.python, self.tools_dir, encoder, resume=trained and not finished)
        with open(step.log_file, 'a') as log:
            log.write(f'[pipeline] {time.strftime("%Y-%m-%d %H:%M:%S")} {step.name}\n'
                      f'[pipeline] command: {shlex.join(cmd)}\n')
            log.flush()
            if not osp.isfile(step.config):
                return self._fail(step, log, t0, cmd, None, f'config not found: {step.config}')
            if step.upstream and encoder is None:
                return self._fail(step, log, t0, cmd, None,
                                  f'no checkpoint from upstream step {step.upstream}')
            if trained and finished:
                msg = (f'the earlier run\'s checkpoints moved to '
                       f'{set_aside_training(step.work_dir)}; training anew')
                log.write(f'[pipeline] {msg}\n')
                self._print(f'    {tag}: {msg}')
            self._write_marker(step, dict(name=step.name, status='running', command=cmd,
                                          log=step.log_file))
            # an earlier result must not count as this run's: kept in its run folder or moved
            if set_aside(step.work_dir, METRICS) is None and osp.isfile(step.metrics_file):
                os.remove(step.metrics_file)
            env = {**os.environ, 'PYTHONUNBUFFERED': '1', **self.env}
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, env=env, bufsize=1)
            try:
                rc = self._follow(proc, log, tag)
            except BaseException:
                proc.terminate()
                proc.wait()
                raise
            log.flush()
            if rc != 0:
                return self._fail(step, log, t0, cmd, rc, f'exit status {rc}')
            if not osp.isfile(step.metrics_file):
                return self._fail(step, log, t0, cmd, rc, 'exited 0 but wrote no metrics.json')
            ckpt = None
            if not step.provides_checkpoint:  # a test-tool defense may save its encoder
                saved = osp.join(step.work_dir, DEFENDED_ENCODER)
                ckpt = osp.abspath(saved) if osp.isfile(saved) else None
            else:
                ckpt = last_checkpoint(step.work_dir)
                if ckpt is None:
                    return self._fail(step, log, t0, cmd, rc, 'exited 0 but saved no checkpoint')
            elapsed = self.clock() - t0
            self._write_marker(step, dict(
                name=step.name, status='done', command=cmd, returncode=rc, checkpoint=ckpt,
                metrics=osp.abspath(step.metrics_file), log=step.log_file,
                elapsed_s=round(elapsed, 1)))
            log.write(f'[pipeline] done in {hms(elapsed)}\n')
        return StepResult(step, 'done', elapsed)
