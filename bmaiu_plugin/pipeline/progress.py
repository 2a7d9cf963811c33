"""Live progress of a running pipeline: which step, its epoch / iteration, elapsed time, ETAs.

The runner feeds every output line of a step to :class:`ProgressReporter`, which reads
mmengine's log lines (``Epoch(train) [2][50/79] ... eta: 0:01:12 ...`` or
``Iter(train) [50/390] ...``) and shows a status line at least every ``interval`` seconds:

``[ 3/11] simclr/badencoder/none  epoch 2/5 [50/79]  step 0:01:02 (ETA 0:00:40)  plan 0:07:10
(ETA 0:06:30)``

On a terminal the line is redrawn in place; elsewhere (a log file, CI) it is printed as a new
line.  The plan's ETA adds, for each step still to run, its estimate (the pipeline config's
``estimates``, scaled by how fast this machine ran the steps so far) or, without one, the mean
time of the finished steps of the same kind.  A finished step gets a one-line summary with its
headline metrics (:func:`headline`).
"""
import datetime
import fnmatch
import math
import re
from typing import Dict, List, Optional, TextIO

from ..utils.errors import ConfigValueError
from .report import attack_metrics, encoder_entries

#: ``Epoch(train) [e][i/N]`` / ``Iter(train) [i/N]`` of mmengine's LogProcessor.
_PROGRESS = re.compile(r'(Epoch|Iter)\((train|val|test)\)\s*\[\s*(\d+)\s*\]'
                       r'(?:\s*\[\s*(\d+)\s*/\s*(\d+)\s*\])?')
_TOTAL = re.compile(r'(Epoch|Iter)\((train|val|test)\)\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]')
_ETA = re.compile(r'eta: (?:(\d+) days?, )?(\d+):(\d{2}):(\d{2})')


def hms(seconds: float) -> str:
    """``H:MM:SS``."""
    s = int(round(max(seconds, 0.)))
    return f'{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}'


def parse_progress(line: str) -> Optional[dict]:
    """mmengine's progress in one log line, or ``None``.

    Returns:
        dict: ``mode`` (``'train'`` / ``'val'`` / ``'test'``), ``epoch`` (None for
        iteration-based loops), ``iter`` and ``iters`` (of the epoch, or of the whole run for
        ``Iter(...)``; None when absent) and ``eta`` (seconds of training left, or None).
    """
    m = _TOTAL.search(line)
    if m and m.group(1) == 'Iter':
        out = dict(mode=m.group(2), epoch=None, iter=int(m.group(3)), iters=int(m.group(4)))
    else:
        m = _PROGRESS.search(line)
        if m is None:
            return None
        out = dict(mode=m.group(2), epoch=int(m.group(3)),
                   iter=int(m.group(4)) if m.group(4) else None,
                   iters=int(m.group(5)) if m.group(5) else None)
    e = _ETA.search(line)
    out['eta'] = (None if e is None else
                  int(e.group(1) or 0) * 86400 + int(e.group(2)) * 3600 + int(e.group(3)) * 60
                  + int(e.group(4)))
    return out


def check_estimates(estimates) -> Dict[str, float]:
    """A pipeline config's ``estimates`` (``{step-name glob: seconds}``), validated."""
    if estimates is None:
        return {}
    if not isinstance(estimates, dict):
        raise ConfigValueError('estimates must be a dict {step-name glob: seconds}, got a '
                               f'{type(estimates).__name__}')
    for k, v in estimates.items():
        if (not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float))
                or not math.isfinite(v) or v <= 0):
            raise ConfigValueError(f'estimates[{k!r}] must be a positive number of seconds')
    return {k: float(v) for k, v in estimates.items()}


def headline(metrics: Optional[dict]) -> str:
    """``BA 35.75 ASR 87.48 PA 2.28`` of a finished step (the defended encoder of a defense,
    with the suspect's ASR before it), or ``''`` without metrics."""
    if not metrics:
        return ''
    entries = encoder_entries(metrics, 'encoder')
    main = entries.get('defended') or entries.get('encoder') or next(iter(entries.values()))
    m = attack_metrics(main)
    parts = [f'{k} {v:.2f}' for k, v in m.items() if v is not None]
    before = attack_metrics(entries['suspect'])['ASR'] if 'suspect' in entries else None
    if before is not None and m['ASR'] is not None:
        parts = [f'ASR {before:.2f} -> {m["ASR"]:.2f}' if p.startswith('ASR ') else p
                 for p in parts]
    return ' '.join(parts)


class ProgressReporter:
    """Status lines for a pipeline run (see the module docstring).

    Args:
        steps (list): The plan (:class:`~bmaiu_plugin.pipeline.runner.Step` s).
        stream (TextIO): Where the lines go.
        clock (callable): Time source in seconds (the runner's).
        estimates (dict, optional): ``{step-name glob: seconds}``: a step's expected time on
            the machine the config was measured on (the most specific matching glob: fewest
            ``*``).
        interval (float, optional): Seconds between status lines; defaults to 1 on a terminal
            (redrawn in place) and 30 elsewhere.
        tty (bool, optional): Redraw in place; defaults to ``stream.isatty()``.
    """

    def __init__(self, steps: List, stream: TextIO, clock, estimates: Optional[dict] = None,
                 interval: Optional[float] = None, tty: Optional[bool] = None):
        self.steps = steps
        self.stream = stream
        self.clock = clock
        self.estimates = check_estimates(estimates)
        if tty is None:
            isatty = getattr(stream, 'isatty', None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = interval if interval is not None else (1. if tty else 30.)
        self.start = clock()
        self.to_run: List[str] = []
        self.elapsed: Dict[str, float] = {}  # finished in this run
        self.current = None
        self.tag = ''
        self.step_start = 0.
        self.progress: Optional[dict] = None
        self.progress_at = 0.
        self.last_status = -math.inf
        self.drawn = False

    # ---- output ---------------------------------------------------------------------------
    def _clear(self) -> None:
        if self.drawn:
            self.stream.write('\r\033[K')
            self.drawn = False

    def print(self, msg: str) -> None:
        """A line of its own (the status line, on a terminal, is redrawn after it)."""
        self._clear()
        print(msg, file=self.stream, flush=True)

    # ---- estimates ------------------------------------------------------------------------
    def estimate(self, step) -> Optional[float]:
        """The config's estimate of a step in seconds (the matching glob with the fewest
        ``*``, the first of those), or ``None``."""
        hits = [(p.count('*'), i, sec) for i, (p, sec) in enumerate(self.estimates.items())
                if fnmatch.fnmatchcase(step.name, p)]
        return min(hits)[2] if hits else None

    def _scale(self) -> float:
        """Observed / estimated time of the steps finished in this run (1 before any)."""
        pairs = [(t, self.estimate(s)) for s in self.steps if (t := self.elapsed.get(s.name))
                 is not None and self.estimate(s)]
        return sum(t for t, _ in pairs) / sum(e for _, e in pairs) if pairs else 1.

    def expected(self, step) -> Optional[float]:
        """Expected seconds of a step on this machine (None: nothing to go by)."""
        est = self.estimate(step)
        if est is not None:
            return est * self._scale()
        for same in (lambda s: s.kind == step.kind and s.defense == step.defense,
                     lambda s: s.kind == step.kind):
            times = [self.elapsed[s.name] for s in self.steps
                     if s.name in self.elapsed and same(s)]
            if times:
                return sum(times) / len(times)
        return None

    def step_left(self, now: float) -> Optional[float]:
        """Seconds the running step still needs (mmengine's ETA first)."""
        p = self.progress
        if p is not None and p['mode'] == 'train' and p['eta'] is not None:
            return max(p['eta'] - (now - self.progress_at), 0.)
        exp = self.expected(self.current)
        return None if exp is None else max(exp - (now - self.step_start), 0.)

    def plan_left(self, now: float) -> Optional[float]:
        """Seconds the plan still needs: the running step's rest plus every step to run."""
        if self.current is None:
            return None
        total = self.step_left(now)
        pending = self.to_run[self.to_run.index(self.current.name) + 1:]
        by_name = {s.name: s for s in self.steps}
        for name in pending:
            exp = self.expected(by_name[name])
            if exp is None or total is None:
                return None
            total += exp
        return total

    # ---- events ---------------------------------------------------------------------------
    def begin(self, to_run: List[str]) -> None:
        """The run starts; ``to_run`` names the steps it will run, in order."""
        self.start = self.clock()
        self.to_run = list(to_run)

    def step_started(self, step, tag: str) -> None:
        self.current, self.tag = step, tag
        self.step_start = self.progress_at = self.clock()
        self.progress = None
        self.last_status = self.step_start

    def line(self, text: str) -> None:
        """An output line of the running step."""
        p = parse_progress(text)
        if p is not None:
            if p['mode'] == 'train' or self.progress is None:
                self.progress, self.progress_at = p, self.clock()
            else:  # keep the training ETA; show the evaluation's position
                self.progress = {**self.progress, 'eval': p}

    def status(self) -> str:
        """The status line of the running step."""
        now = self.clock()
        parts = [self.tag]
        p = self.progress
        if p is not None:
            ev = p.get('eval')
            where = []
            if p['epoch'] is not None:
                max_epochs = self.current.cfg_options.get('train_cfg.max_epochs')
                where.append(f'epoch {p["epoch"]}' + (f'/{max_epochs}' if max_epochs else ''))
            if p['iter'] is not None:
                where.append(f'[{p["iter"]}/{p["iters"]}]' if p['iters'] else f'[{p["iter"]}]')
            if ev is not None:
                where.append(ev['mode'])
            if where:
                parts.append(' '.join(where))
        left = self.step_left(now)
        parts.append(f'step {hms(now - self.step_start)}'
                     + (f' (ETA {hms(left)})' if left is not None else ''))
        plan = self.plan_left(now)
        parts.append(f'plan {hms(now - self.start)}'
                     + (f' (ETA {hms(plan)}, done ~{self._wall(plan)})' if plan is not None
                        else ''))
        return '  '.join(parts)

    @staticmethod
    def _wall(seconds: float) -> str:
        return (datetime.datetime.now() + datetime.timedelta(seconds=seconds)).strftime('%H:%M')

    def tick(self) -> None:
        """Show the status line if ``interval`` seconds passed since the last one."""
        if self.current is None or self.clock() - self.last_status < self.interval:
            return
        self.last_status = self.clock()
        text = self.status()
        if self.tty:
            self._clear()
            self.stream.write(text[:200])
            self.stream.flush()
            self.drawn = True
        else:
            print(f'    {text}', file=self.stream, flush=True)

    def step_finished(self, step, elapsed: float) -> None:
        self.elapsed[step.name] = elapsed
        self.current = None
        self._clear()
