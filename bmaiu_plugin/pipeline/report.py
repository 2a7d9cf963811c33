"""Results of a pipeline: ``results.csv`` (one row per run, encoder and trigger) and
``results.md`` (the paper's table shapes), read from the runs' ``metrics.json`` files.

Also the table helpers :func:`rows`, :func:`compact_row` and :func:`fmt`, which
``projects/cpu_study/tools/collect_metrics.py`` imports from here (one copy).

``metrics.json`` comes in two forms (``bmaiu_plugin.evaluation.loop.summarize``): flat, for a run
that probes one encoder (``{'BA': .., 'ASR': .., 'PA': .., 'triggers': ..}``), or with one entry
per encoder (``suspect`` / ``implanted`` / ``defended``) plus run-level scalars (``BTS``,
``CCS``, ``PL1``, ...).  ``ASR`` / ``PA`` / ``target`` are lists when ``triggers`` is.
"""
import csv
import json
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

# the defense's own triggers in its metrics (BMAIU's ``custom``; never the attacker's)
from ..defenses.base import OWN_TRIGGER as CUSTOM, is_own_trigger

#: Encoder role of a flat metrics.json, by step kind.
FLAT_ROLE = {'pretrain': 'clean', 'eval': 'clean', 'attack': 'attacked', 'poison': 'attacked',
             'defense': 'defended'}
#: Per-encoder keys reported in their own CSV columns.
ENTRY_KEYS = ('BA', 'ASR', 'PA', 'ASR_all', 'target', 'triggers')
#: Run-level keys with their own CSV columns (looked up in the entry first).
SCALAR_COLUMNS = ('BTS', 'BTS_clean', 'BTS_gap', 'CCS', 'PL1', 'audit_ASR', 'audit_collapse')
CSV_FIELDS = ['seed', 'ssl', 'attack', 'defense', 'role', 'trigger', 'target', 'BA', 'ASR', 'PA',
              'ASR_all', *SCALAR_COLUMNS, 'extra', 'metrics']
#: Where a missing value shows in a Markdown table.
MISSING = '—'


# ------------------------------------------------------------------------------------------
# helpers shared with projects/cpu_study/tools/collect_metrics.py
# ------------------------------------------------------------------------------------------
def as_list(v) -> list:
    """``v`` if it is a list, else ``[v]``."""
    return v if isinstance(v, list) else [v]


def fmt(v) -> str:
    """A table cell: ``''`` for ``None``, two decimals for floats."""
    return '' if v is None else (f'{v:.2f}' if isinstance(v, float) else str(v))


def rows(name: str, m: dict):
    """One row per encoder of a run: ``dict(run, encoder, BA, cells={trigger: (ASR, PA)},
    BTS, BTS_clean, CCS)``."""
    encs = {k: v for k, v in m.items() if isinstance(v, dict) and 'BA' in v}
    if not encs:
        encs = {'encoder': m}
    for enc, e in encs.items():
        trigs = as_list(e.get('triggers', []))
        asr, pa = as_list(e.get('ASR', [])), as_list(e.get('PA', []))
        cells = {t: (a, p) for t, a, p in zip(trigs, asr, pa)}
        yield dict(run=name, encoder=enc, BA=e['BA'], cells=cells,
                   BTS=m.get('BTS'), BTS_clean=m.get('BTS_clean'), CCS=m.get('CCS'))


def compact_row(name: str, m: dict, attack: str) -> list:
    """One row per BMAIU run: suspect / implanted / defended for the attack and the custom
    trigger (columns :data:`COMPACT_HEAD`)."""
    def get(enc, key, trig):
        e = m.get(enc, {})
        if key == 'BA':
            return e.get('BA')
        cells = dict(zip(as_list(e.get('triggers', [])), as_list(e.get(key, []))))
        return cells.get(trig)
    return [name, get('suspect', 'BA', None), get('defended', 'BA', None),
            get('suspect', 'ASR', attack), get('implanted', 'ASR', attack),
            get('defended', 'ASR', attack), get('defended', 'PA', attack),
            get('implanted', 'ASR', CUSTOM), get('defended', 'ASR', CUSTOM),
            m.get('trigger_shift_f1'), m.get('BTS_gap'), m.get('CCS')]


COMPACT_HEAD = ['run', 'BA f0', 'BA f2', 'ASR f0', 'ASR f1', 'ASR f2', 'PA f2', 'custom ASR f1',
                'custom ASR f2', 'shift f1', 'BTS_gap', 'CCS']


def load_metrics(path: str) -> Optional[dict]:
    """A ``metrics.json`` as a dict, or ``None`` when absent or unreadable."""
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


def encoder_entries(m: dict, flat_role: str) -> Dict[str, dict]:
    """``{role: entry}``: the per-encoder entries, or ``{flat_role: m}`` for a flat file."""
    encs = {k: v for k, v in m.items() if isinstance(v, dict) and 'BA' in v}
    return encs or {flat_role: m}


def trigger_cells(entry: dict) -> List[Tuple[str, Any, Any, Any, Any]]:
    """``[(trigger, target, ASR, PA, ASR_all), ...]`` of one encoder entry."""
    trigs = as_list(entry.get('triggers', [])) if 'triggers' in entry else []
    n = len(trigs)

    def col(key):
        v = as_list(entry.get(key)) if key in entry else []
        return v + [None] * (n - len(v))
    return list(zip(trigs, col('target'), col('ASR'), col('PA'), col('ASR_all')))


# ------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------
@dataclass
class Run:
    """The metrics of one pipeline step.

    Attributes:
        ssl (str): SSL method.
        attack (str): Attack (``'clean'`` for the clean encoder).
        defense (str): Defense (``'none'`` for the undefended encoder).
        kind (str): Step kind (``pretrain``, ``poison``, ``attack``, ``defense``, ``eval``).
        path (str): Its ``metrics.json``.
        metrics (dict): The file's content.
        options (dict): The step's ``--cfg-options`` (sweep values are read from them).
        seed (int, optional): The replicate's seed in a pipeline with ``seeds``.
    """
    ssl: str
    attack: str
    defense: str
    kind: str
    path: str
    metrics: dict
    options: Dict[str, Any] = field(default_factory=dict)
    seed: Optional[int] = None

    @property
    def entries(self) -> Dict[str, dict]:
        return encoder_entries(self.metrics, FLAT_ROLE.get(self.kind, 'encoder'))


def collect_runs(steps: Iterable) -> List[Run]:
    """The runs of the steps (:class:`~bmaiu_plugin.pipeline.runner.Step`) that wrote a
    ``metrics.json``, in plan order."""
    out = []
    for s in steps:
        m = load_metrics(s.metrics_file)
        if m is not None:
            out.append(Run(s.ssl, s.attack, s.defense, s.kind, osp.abspath(s.metrics_file), m,
                           dict(s.cfg_options), getattr(s, 'seed', None)))
    return out


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def csv_rows(runs: Sequence[Run]) -> List[Dict[str, Any]]:
    """One row per (run, encoder, trigger); an encoder probed without triggers gives one row
    with BA only.  Run-level scalars go to their columns (:data:`SCALAR_COLUMNS`) or, as
    ``key=value`` pairs, to ``extra``."""
    out = []
    for r in runs:
        m = r.metrics
        run_scalars = {k: v for k, v in m.items() if k not in ENTRY_KEYS and
                       not isinstance(v, (dict, list))}
        for role, e in r.entries.items():
            scalars = dict(run_scalars)
            if e is not m:
                scalars.update({k: v for k, v in e.items() if k not in ENTRY_KEYS and
                                not isinstance(v, (dict, list))})
            base = dict(seed=r.seed, ssl=r.ssl, attack=r.attack, defense=r.defense, role=role,
                        BA=e.get('BA'), metrics=r.path)
            for key in SCALAR_COLUMNS:
                base[key] = scalars.pop(key, None)
            extra = {k: v for k, v in scalars.items() if _num(v) is not None or
                     isinstance(v, str)}
            base['extra'] = ';'.join(f'{k}={v}' for k, v in sorted(extra.items()))
            cells = trigger_cells(e)
            if not cells:
                out.append({**base, 'trigger': '', 'target': None, 'ASR': None, 'PA': None,
                            'ASR_all': None})
            for trig, target, asr, pa, asr_all in cells:
                out.append({**base, 'trigger': trig, 'target': target, 'ASR': asr, 'PA': pa,
                            'ASR_all': asr_all})
    return out


def write_csv(runs: Sequence[Run], path: str) -> str:
    """Write :func:`csv_rows` to ``path`` (columns :data:`CSV_FIELDS`)."""
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in csv_rows(runs):
            w.writerow({k: ('' if row.get(k) is None else row[k]) for k in CSV_FIELDS})
    return path


# ------------------------------------------------------------------------------------------
# table cells
# ------------------------------------------------------------------------------------------
def _mean(values: Iterable) -> Optional[float]:
    vals = [v for v in values if _num(v) is not None]
    return sum(vals) / len(vals) if vals else None


#: The residual-backdoor audit's columns of an encoder entry (``test_cfg.audit``).
AUDIT_KEYS = ('audit_ASR', 'audit_collapse')


def attack_metrics(entry: Optional[dict]) -> Dict[str, Optional[float]]:
    """BA, ASR / PA averaged over the attacker's triggers (every trigger but the defense's own,
    :func:`~bmaiu_plugin.defenses.base.is_own_trigger`) and the audit's columns
    (:data:`AUDIT_KEYS`, ``None`` when not audited) of one encoder entry."""
    if entry is None:
        return dict(BA=None, ASR=None, PA=None, **{k: None for k in AUDIT_KEYS})
    cells = [c for c in trigger_cells(entry) if not is_own_trigger(c[0])]
    return dict(BA=_num(entry.get('BA')), ASR=_mean(c[2] for c in cells),
                PA=_mean(c[3] for c in cells), **{k: _num(entry.get(k)) for k in AUDIT_KEYS})


@dataclass(frozen=True)
class Stat:
    """A metric over the seeds of a cell.

    Attributes:
        mean (float): The mean.
        sd (float, optional): The sample standard deviation (``None`` for one value).
        n (int): How many seeds gave a value.
    """
    mean: float
    sd: Optional[float]
    n: int


def stat(values: Iterable) -> Optional[Stat]:
    """The :class:`Stat` of the numbers among ``values`` (``None`` when there are none)."""
    vals = [float(v) for v in values if _num(v) is not None]
    if not vals:
        return None
    m = sum(vals) / len(vals)
    sd = (sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) ** .5 if len(vals) > 1 else None
    return Stat(m, sd, len(vals))


class RunIndex:
    """Look runs up by ``(ssl, attack, defense)`` and seed.

    Without a ``seed`` argument a lookup returns the first seed's run that exists; the
    ``*_stats`` methods aggregate a cell over every seed (one seed: its value, ``n == 1``).
    """

    def __init__(self, runs: Sequence[Run]):
        self.by_seed: Dict[Optional[int], Dict[Tuple[str, str, str], Run]] = {}
        for r in runs:
            self.by_seed.setdefault(r.seed, {})[(r.ssl, r.attack, r.defense)] = r
        self.seeds: List[Optional[int]] = list(self.by_seed) or [None]

    def _seeds(self, seed: Optional[int]) -> List[Optional[int]]:
        return self.seeds if seed is None else [seed]

    def get(self, ssl: str, attack: str, defense: str,
            seed: Optional[int] = None) -> Optional[Run]:
        for k in self._seeds(seed):
            r = self.by_seed.get(k, {}).get((ssl, attack, defense))
            if r is not None:
                return r
        return None

    def before(self, ssl: str, attack: str, seed: Optional[int] = None) -> Optional[dict]:
        """The undefended attacked encoder: the attack run's own probe, else the ``suspect``
        entry of any of its defense runs."""
        for k in self._seeds(seed):
            runs = self.by_seed.get(k, {})
            r = runs.get((ssl, attack, 'none'))
            if r is not None:
                ent = r.entries
                return ent.get('attacked') or next(iter(ent.values()))
            for (s, a, _), run in runs.items():
                if s == ssl and a == attack and 'suspect' in run.entries:
                    return run.entries['suspect']
        return None

    def after(self, ssl: str, attack: str, defense: str,
              seed: Optional[int] = None) -> Optional[dict]:
        """The defended encoder's entry of a defense run."""
        if defense == 'none':
            return self.before(ssl, attack, seed)
        r = self.get(ssl, attack, defense, seed)
        if r is None:
            return None
        ent = r.entries
        return ent.get('defended') or next(iter(ent.values()))

    def _per_seed(self, ssl: str, attack: str, defense: str) -> List[Tuple[Run, dict]]:
        out = []
        for k in self.seeds:
            entry = self.after(ssl, attack, defense, k)
            if entry is not None:
                out.append((self.get(ssl, attack, defense, k)
                            or self.get(ssl, attack, 'none', k), entry))
        return out

    def attack_stats(self, ssl: str, attack: str, defense: str) -> Dict[str, Optional[Stat]]:
        """:func:`attack_metrics` of the cell's encoder over the seeds."""
        per = [attack_metrics(e) for _, e in self._per_seed(ssl, attack, defense)]
        return {k: stat(m[k] for m in per) for k in ('BA', 'ASR', 'PA') + AUDIT_KEYS}

    def audited(self) -> bool:
        """Whether any encoder entry carries the audit's columns."""
        return any(k in e for runs in self.by_seed.values() for r in runs.values()
                   for e in r.entries.values() for k in AUDIT_KEYS)

    def trigger_stats(self, ssl: str, attack: str, defense: str) -> Dict[str, dict]:
        """``{trigger: dict(target, ASR, PA, ASR_all)}`` (:class:`Stat` s over the seeds) of the
        cell's encoder, in the triggers' order."""
        cells: Dict[str, dict] = {}
        for _, e in self._per_seed(ssl, attack, defense):
            for trig, target, asr, pa, asr_all in trigger_cells(e):
                c = cells.setdefault(trig, dict(target=target, ASR=[], PA=[], ASR_all=[]))
                c['ASR'].append(asr)
                c['PA'].append(pa)
                c['ASR_all'].append(asr_all)
        return {t: dict(target=c['target'], **{k: stat(c[k]) for k in ('ASR', 'PA', 'ASR_all')})
                for t, c in cells.items()}

    def value_stats(self, ssl: str, attack: str, defense: str, key: str) -> Optional[Stat]:
        """A run-level metric (``PL1``, ``BTS``, ...; looked up in the encoder entry first) of
        the cell over the seeds."""
        return stat(_num(e.get(key, run.metrics.get(key) if run is not None else None))
                    for run, e in self._per_seed(ssl, attack, defense))


def _cell(v, digits: str = '.2f', seeds: int = 1) -> str:
    """A number, or a :class:`Stat` as ``mean ± sd`` (with ``(n=k)`` when fewer than the
    pipeline's ``seeds`` gave a value)."""
    if v is None:
        return MISSING
    if not isinstance(v, Stat):
        return format(v, digits)
    text = format(v.mean, digits)
    if v.sd is not None:
        text += f' ± {format(v.sd, digits)}'
    return text + (f' (n={v.n})' if v.n < seeds else '')


def _mean_of(stats: Iterable[Optional[Stat]]) -> Optional[float]:
    return _mean(st.mean for st in stats if st is not None)


def _table(head: List[str], body: List[List[str]]) -> List[str]:
    return (['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
            + ['| ' + ' | '.join(r) + ' |' for r in body])


def _display(cfg, section: str, key: str) -> str:
    if key == 'none':
        return 'None'
    entry = (cfg.get(section) or {}).get(key) or {}
    return entry.get('name', key)


def grid_table(cfg, study: dict, index: RunIndex, ssls: List[str], attacks: List[str],
               defenses: List[str]) -> List[str]:
    """Table 3's shape: one row per (SSL method, attack); for the undefended encoder and each
    defense, BA / ASR / PA; an AVE row of the column means over the rows that have them."""
    groups = ['none'] + defenses
    n = len(index.seeds)
    keys = _columns(index)
    head = ['SSL', 'attack'] + [f'{_display(cfg, "defenses", d)} {_LABEL.get(k, k)}'
                                for d in groups for k in keys]
    fmts = [_fmt_key(k) for _ in groups for k in keys]
    body, cols = [], [[] for _ in range(len(keys) * len(groups))]
    for s in ssls:
        for a in attacks:
            vals = []
            for d in groups:
                m = index.attack_stats(s, a, d)
                vals += [m[k] for k in keys]
            for c, v in zip(cols, vals):
                c.append(v)
            body.append([_display(cfg, 'ssl', s), _display(cfg, 'attacks', a)]
                        + [_cell(v, f, n) for v, f in zip(vals, fmts)])
    body.append(['AVE', ''] + [_cell(_mean_of(c), f) for c, f in zip(cols, fmts)])
    return _table(head, body)


#: Column labels of the audit's keys.
_LABEL = {'audit_ASR': 'audit ASR', 'audit_collapse': 'audit collapse'}


def _columns(index: RunIndex) -> Tuple[str, ...]:
    """BA / ASR / PA, and the audit's columns where some encoder was audited."""
    return ('BA', 'ASR', 'PA') + (AUDIT_KEYS if index.audited() else ())


def _fmt_key(key: str) -> str:
    return '.4f' if key == 'audit_collapse' else '.2f'


#: What a ``per_target`` study's ``metrics`` may name.
TRIGGER_METRICS = ('ASR', 'PA', 'ASR_all')


def per_target_table(cfg, study: dict, index: RunIndex, ssl: str, attack: str,
                     defenses: List[str]) -> List[str]:
    """Tables 1, 2 and 5's shape: one row per attacker trigger (target); for the undefended
    encoder and each defense, the study's ``metrics`` (default ASR and PA); AVE and BA rows."""
    metrics = list(study.get('metrics') or ('ASR', 'PA'))
    groups = ['none'] + defenses
    n = len(index.seeds)
    cells = {d: index.trigger_stats(ssl, attack, d) for d in groups}
    ref = next((c for c in cells.values() if c), {})
    trig_names = [t for t in ref if not is_own_trigger(t)]
    head = ['attack target'] + [f'{_display(cfg, "defenses", d)} {k}' for d in groups
                                for k in metrics]
    body, cols = [], [[] for _ in range(len(metrics) * len(groups))]
    for t in trig_names:
        vals = [cells[d].get(t, {}).get(k) for d in groups for k in metrics]
        for col, v in zip(cols, vals):
            col.append(v)
        target = ref[t]['target']
        body.append([f'Target {target}' if target is not None else t]
                    + [_cell(v, seeds=n) for v in vals])
    body.append(['AVE'] + [_cell(_mean_of(c)) for c in cols])
    ba = []
    for d in groups:
        ba += [index.attack_stats(ssl, attack, d)['BA']] + [None] * (len(metrics) - 1)
    body.append(['BA'] + [_cell(v, seeds=n) if i % len(metrics) == 0 else ''
                          for i, v in enumerate(ba)])
    return _table(head, body)


def sweep_value(run: Optional[Run], key: str, default):
    """The value of a swept ``--cfg-options`` key in a run (``default`` when not set)."""
    if run is None:
        return default
    return run.options.get(key, default)


def rows_table(cfg, study: dict, index: RunIndex, ssls: List[str], attacks: List[str],
               defenses: List[str]) -> List[str]:
    """Tables 6, 7 and 8's shape: one row per defended run, BA / ASR / PA before and after the
    defense, plus the study's ``extra`` run-level metrics (e.g. ``PL1``, ``BTS``, ``CCS``).

    Rows are labelled by ``row_label`` (``'defense'``, ``'ssl'`` or ``'attack'``; with a
    ``sweep``, by the swept value)."""
    label_by = study.get('row_label', 'defense')
    extra = list(study.get('extra') or ())
    sweep = study.get('sweep')
    n = len(index.seeds)
    keys = _columns(index)
    head = [sweep['key'] if sweep else label_by] + [
        f'{w} {_LABEL.get(k, k)}' for w in ('before', 'after') for k in keys] + extra
    body = []
    for s in ssls:
        for a in attacks:
            for d in defenses:
                run = index.get(s, a, d)
                if sweep:
                    label = str(sweep_value(run, sweep['key'], sweep.get('default')))
                else:
                    section = {'defense': 'defenses', 'ssl': 'ssl', 'attack': 'attacks'}[label_by]
                    label = _display(cfg, section, {'defense': d, 'ssl': s, 'attack': a}[label_by])
                b = index.attack_stats(s, a, 'none')
                f = index.attack_stats(s, a, d)
                vals = [_cell(m[k], _fmt_key(k), n) for m in (b, f) for k in keys]
                ext = [_cell(index.value_stats(s, a, d, k) if run is not None else None,
                             '.4g', n) for k in extra]
                body.append([label] + vals + ext)
    return _table(head, body)


def study_tables(cfg, name: str, study: dict, index: RunIndex) -> List[str]:
    """The Markdown of one study (title, table(s), where the numbers come from)."""
    ssls = list(study.get('ssl') or cfg.ssl)
    ssls = [ssls] if isinstance(ssls, str) else ssls
    attacks = study.get('attacks') or list(cfg.attacks)
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    defenses = study.get('defenses')
    defenses = list(cfg.get('defenses') or {}) if defenses is None else (
        [defenses] if isinstance(defenses, str) else list(defenses))
    table = study.get('table', 'grid')
    lines = [f'## {study.get("title", name)}', '']
    if table == 'grid':
        lines += grid_table(cfg, study, index, ssls, attacks, defenses)
    elif table == 'per_target':
        for s in ssls:
            for a in attacks:
                if len(ssls) * len(attacks) > 1:
                    lines += [f'*{_display(cfg, "ssl", s)}, {_display(cfg, "attacks", a)}*', '']
                lines += per_target_table(cfg, study, index, s, a, defenses) + ['']
    else:
        lines += rows_table(cfg, study, index, ssls, attacks, defenses)
    where = ('`<work_dir>/<ssl>/<attack>/<defense>/metrics.json`' if index.seeds == [None]
             else '`<work_dir>/seed<k>/<ssl>/<attack>/<defense>/metrics.json`')
    lines += ['', f'Numbers: {where} of the runs (`none` = undefended; see results.csv); '
              f'{MISSING} = not run or failed.', '']
    return lines


def clean_table(cfg, index: RunIndex) -> List[str]:
    """The clean encoders: BA and the ASR of every attack's trigger on them, per SSL method."""
    ssls = list(dict.fromkeys(s for runs in index.by_seed.values()
                              for (s, a, _) in runs if a == 'clean'))
    if not ssls:
        return []
    n = len(index.seeds)
    cells = {s: index.trigger_stats(s, 'clean', 'none') for s in ssls}
    trig = list(dict.fromkeys(t for c in cells.values() for t in c))
    audit = AUDIT_KEYS if index.audited() else ()
    body = []
    for s in ssls:
        m = index.attack_stats(s, 'clean', 'none')
        body.append([_display(cfg, 'ssl', s), _cell(m['BA'], seeds=n)]
                    + [_cell(cells[s].get(t, {}).get('ASR'), seeds=n) for t in trig]
                    + [_cell(m[k], _fmt_key(k), n) for k in audit])
    head = ['SSL', 'BA'] + [f'{t} ASR' for t in trig] + [_LABEL[k] for k in audit]
    return ['## Clean encoders', ''] + _table(head, body) + ['']


def results_markdown(cfg, runs: Sequence[Run], title: str = 'Pipeline results') -> str:
    """``results.md``: one section per study of the pipeline config, then the clean
    encoders."""
    from .runner import studies_of
    index = RunIndex(runs)
    lines = [f'# {title}', '',
             'BA = clean accuracy, ASR = attack success rate (non-target test images), PA = '
             'accuracy on triggered images, all of a linear probe, in %.  Multi-trigger attacks '
             'show the mean over their triggers.', '']
    if index.audited():
        lines += ['audit ASR / audit collapse: the residual-backdoor audit of the encoder '
                  '(trigger inversion with its own budget, `test_cfg.audit`): the probe ASR of '
                  'its strongest inverted trigger and the largest feature collapse (mean '
                  'pairwise cosine of triggered test images).  A defense removed the backdoor '
                  'only where these are close to the clean encoder\'s.', '']
    if index.seeds != [None]:
        lines += [f'Each cell: mean ± sample standard deviation over the seeds '
                  f'{index.seeds} (every step of a seed, pretraining included, runs with that '
                  f'seed); (n=k) marks a cell that fewer seeds reached.  AVE rows: the mean of '
                  f'the row means.', '']
    for name, study in studies_of(cfg).items():
        lines += study_tables(cfg, name, study, index)
    lines += clean_table(cfg, index)
    return '\n'.join(lines)


def write_reports(cfg, steps: Sequence, out_dir: str) -> Dict[str, str]:
    """Write ``results.csv`` and ``results.md`` for the steps of a pipeline.

    Args:
        cfg (Config): The pipeline config.
        steps (list[Step]): Its plan.
        out_dir (str): Where to write.

    Returns:
        dict: ``{'csv': path, 'md': path}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    runs = collect_runs(steps)
    csv_path = write_csv(runs, osp.join(out_dir, 'results.csv'))
    md_path = osp.join(out_dir, 'results.md')
    with open(md_path, 'w') as f:
        f.write(results_markdown(cfg, runs, cfg.get('title', 'Pipeline results')) + '\n')
    return dict(csv=csv_path, md=md_path)


__all__ = ['as_list', 'fmt', 'rows', 'compact_row', 'COMPACT_HEAD', 'load_metrics', 'Run',
           'collect_runs', 'csv_rows', 'write_csv', 'attack_metrics', 'Stat', 'stat', 'RunIndex',
           'grid_table', 'per_target_table', 'rows_table', 'clean_table', 'results_markdown',
           'write_reports']
