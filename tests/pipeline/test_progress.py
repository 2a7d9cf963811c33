"""Live progress of the pipeline (``bmaiu_plugin.pipeline.progress``): mmengine log lines
parsed, status lines on a fake clock (interval, step and plan ETAs, scaling of the config's
estimates), terminal redraw, the finished step's one-line summary, bad ``estimates``."""
import io

import pytest

from bmaiu_plugin.pipeline.progress import (ProgressReporter, check_estimates, headline, hms,
                                            parse_progress)
from bmaiu_plugin.pipeline.runner import Step
from bmaiu_plugin.utils.errors import ConfigValueError

EPOCH_LINE = ('12/07 11:30:01 - mmengine - INFO - Epoch(train)   [2][50/79]  base_lr: 6.0000e-02 '
              'lr: 5.1e-02  eta: 0:01:12  time: 0.9512  data_time: 0.0102  loss: 5.9012')
ITER_LINE = ('12/07 11:30:01 - mmengine - INFO - Iter(train) [ 150/1000]  lr: 1e-02  '
             'eta: 1 day, 2:03:04  time: 0.2  data_time: 0.01  loss: 1.0')


class Clock:
    def __init__(self):
        self.t = 1000.

    def __call__(self):
        return self.t


def _steps():
    mk = lambda attack, defense, kind, opts=None: Step(  # noqa: E731
        'simclr', attack, defense, kind, 'train', 'c.py', 'w', opts or {})
    return [mk('clean', 'none', 'pretrain'),
            mk('badencoder', 'none', 'attack', {'train_cfg.max_epochs': 5}),
            mk('badencoder', 'bmaiu', 'defense'), mk('estas', 'none', 'attack'),
            mk('estas', 'bmaiu', 'defense')]


def test_parse_progress_reads_mmengine_lines():
    assert parse_progress(EPOCH_LINE) == dict(mode='train', epoch=2, iter=50, iters=79, eta=72)
    assert parse_progress(ITER_LINE) == dict(mode='train', epoch=None, iter=150, iters=1000,
                                             eta=86400 + 2 * 3600 + 3 * 60 + 4)
    assert parse_progress('Epoch(val) [1][ 10/20]    eta: 0:00:05') == dict(
        mode='val', epoch=1, iter=10, iters=20, eta=5)
    assert parse_progress('Epoch(val) [3]  accuracy: 50.0')['epoch'] == 3
    assert parse_progress('Exp name: simclr_x') is None
    assert hms(3725.4) == '1:02:05' and hms(-3) == '0:00:00'


def test_status_lines_every_interval_with_step_and_plan_eta():
    clock, out = Clock(), io.StringIO()
    steps = _steps()
    rep = ProgressReporter(steps, out, clock, estimates={'*/clean/none': 300, '*/*/none': 100,
                                                         '*/*/bmaiu': 50}, interval=30, tty=False)
    rep.begin([s.name for s in steps])
    # the first step takes twice its estimate: the plan's estimates double
    rep.step_started(steps[0], '[1/5] simclr/clean/none')
    clock.t += 600.
    rep.step_finished(steps[0], 600.)
    rep.step_started(steps[1], '[2/5] simclr/badencoder/none')
    clock.t += 10.
    rep.line(EPOCH_LINE)
    rep.tick()
    assert out.getvalue() == ''  # 10 s < interval
    clock.t += 22.
    rep.tick()
    line = out.getvalue().strip()
    assert line.startswith('[2/5] simclr/badencoder/none  epoch 2/5 [50/79]')
    # step: mmengine's 72 s ETA, 22 s ago; plan: 50 s + (50 + 100 + 50) s x 2
    assert 'step 0:00:32 (ETA 0:00:50)' in line
    assert 'plan 0:10:32 (ETA 0:07:30, done ~' in line
    # no new line before the next interval
    clock.t += 29.
    rep.tick()
    assert out.getvalue().count('\n') == 1
    clock.t += 1.
    rep.tick()
    assert out.getvalue().count('\n') == 2


def test_plan_eta_without_estimates_uses_finished_steps_of_the_same_kind():
    clock, out = Clock(), io.StringIO()
    steps = _steps()
    rep = ProgressReporter(steps, out, clock, interval=0, tty=False)
    rep.begin([s.name for s in steps[1:]])  # the clean step was done earlier
    rep.step_started(steps[1], 'a')
    assert rep.plan_left(clock()) is None  # nothing to go by yet
    clock.t += 80.
    rep.step_finished(steps[1], 80.)
    rep.step_started(steps[2], 'b')
    clock.t += 10.
    rep.step_finished(steps[2], 10.)
    rep.step_started(steps[3], 'c')
    clock.t += 30.
    # this attack: 80 - 30 s left (the finished attack); then its defense: 10 s
    assert rep.step_left(clock()) == 50.
    assert rep.plan_left(clock()) == 60.
    rep.tick()
    assert 'step 0:00:30 (ETA 0:00:50)  plan 0:02:00 (ETA 0:01:00' in out.getvalue()


def test_terminal_status_is_redrawn_in_place():
    clock, out = Clock(), io.StringIO()
    steps = _steps()
    rep = ProgressReporter(steps, out, clock, interval=1, tty=True)
    rep.begin([s.name for s in steps])
    rep.step_started(steps[0], '[1/5] x')
    clock.t += 2.
    rep.tick()
    assert out.getvalue().startswith('[1/5] x  step 0:00:02') and '\n' not in out.getvalue()
    rep.print('    [1/5] x: error: boom')
    assert out.getvalue().endswith('\r\033[K    [1/5] x: error: boom\n')
    clock.t += 2.
    rep.tick()
    assert out.getvalue().endswith('\n[1/5] x  step 0:00:04  plan 0:00:04')


def test_headline_of_finished_steps():
    assert headline({'BA': 35.75, 'ASR': 87.48, 'PA': 2.28,
                     'triggers': 'badencoder'}) == 'BA 35.75 ASR 87.48 PA 2.28'
    defended = {'suspect': {'BA': 35.7, 'ASR': [87.5], 'PA': [2.3], 'triggers': ['badencoder']},
                'defended': {'BA': 36.65, 'ASR': [17.14, 50.], 'PA': [12.97, 9.],
                             'triggers': ['badencoder', 'custom']}, 'CCS': 0.9}
    assert headline(defended) == 'BA 36.65 ASR 87.50 -> 17.14 PA 12.97'
    assert headline({'BA': 36.0}) == 'BA 36.00'
    assert headline(None) == ''


@pytest.mark.parametrize('bad', [[1], {'*': 0}, {'*': float('nan')}, {'*': 'fast'},
                                 {'*': True}])
def test_bad_estimates_are_rejected(bad):
    with pytest.raises(ConfigValueError, match='estimates'):
        check_estimates(bad)
    assert check_estimates(None) == {} and check_estimates({'*': 2}) == {'*': 2.}
