"""The pipeline (``tools/pipeline.py``, ``bmaiu_plugin.pipeline``): grid expansion and order,
skip-if-done / resume, failure isolation, reports with exact numbers, figures, shipped configs.

Steps run fake ``train.py`` / ``test.py`` tools (plain Python, no torch) that follow the real
tools' command line and write ``metrics.json`` / checkpoints, so the runner's subprocess,
logging and bookkeeping paths are exercised for real in well under a second per step.
"""
import csv
import glob
import io
import json
import os
import os.path as osp
import sys
import textwrap

import numpy as np
import pytest
from mmengine.config import Config

from bmaiu_plugin.pipeline import (PipelineRunner, expand, flatten_options, is_done,
                                   options_to_args, select, write_reports)
from bmaiu_plugin.pipeline.figures import (encode_clean_triggered, make_figures, plot_heatmap,
                                           plot_sweep, plot_tsne)
from bmaiu_plugin.pipeline.report import collect_runs, results_markdown
from bmaiu_plugin.utils.errors import ConfigValueError

from conftest import REPO_ROOT  # noqa: E402

REPO = REPO_ROOT
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'

# A stand-in for tools/train.py and tools/test.py: same arguments; the "config" is a Python
# literal saying what to write ({'metrics': {...}} or {'fail': True}).
FAKE_TOOL = textwrap.dedent('''
    import argparse, ast, json, os, sys, time
    TOOL = {tool!r}
    p = argparse.ArgumentParser()
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?')
    p.add_argument('--work-dir')
    p.add_argument('--resume', action='store_true')
    p.add_argument('--cfg-options', nargs='+', default=[])
    a = p.parse_args()
    opts = dict(o.split('=', 1) for o in a.cfg_options)
    spec = ast.literal_eval(open(a.config).read())
    os.makedirs(a.work_dir, exist_ok=True)
    with open(os.path.join(a.work_dir, 'calls.txt'), 'a') as f:
        f.write(json.dumps(dict(argv=sys.argv[1:], opts=opts)) + '\\n')
    print('Epoch(train) [1][1/1] fake progress line  eta: 0:00:01', flush=True)
    time.sleep(spec.get('sleep', 0))
    if spec.get('fail'):
        print('error: boom', file=sys.stderr)
        sys.exit(2)
    enc = a.checkpoint or opts.get('encoder_checkpoint')
    if enc is not None and not os.path.isfile(enc):
        print('error: encoder missing ' + enc, file=sys.stderr)
        sys.exit(2)
    with open(os.path.join(a.work_dir, 'metrics.json'), 'w') as f:
        json.dump(spec.get('metrics', {{'BA': 50.0}}), f)
    if TOOL == 'train':
        ckpt = os.path.join(a.work_dir, 'epoch_1.pth')
        open(ckpt, 'w').write('weights')
        open(os.path.join(a.work_dir, 'last_checkpoint'), 'w').write(ckpt)
''')


@pytest.fixture
def fake_tools(tmp_path):
    d = tmp_path / 'tools'
    d.mkdir()
    for tool in ('train', 'test'):
        (d / f'{tool}.py').write_text(FAKE_TOOL.format(tool=tool))
    return str(d)


def _conf(tmp_path, name, spec):
    path = tmp_path / 'confs' / f'{name}.py'
    path.parent.mkdir(exist_ok=True)
    path.write_text(repr(spec))
    return str(path)


def _pipeline_cfg(tmp_path, fail=()):
    """Two SSL methods (one pretrained here, one given as a checkpoint), a fine-tuning and a
    poisoning attack, two defenses, one of them only in a second study."""
    def c(name, metrics=None):
        return _conf(tmp_path, name, {'fail': True} if name in fail else
                     {'metrics': metrics or {'BA': 50.0}})
    given = tmp_path / 'given_clean.pth'
    given.write_text('weights')
    return Config(dict(
        options=dict(all={'val_dataloader.dataset.indices': 100},
                     pretrain={'train_cfg.max_epochs': 2}, attack={'train_cfg.max_epochs': 3},
                     defense={'train_cfg.max_epochs': 4}),
        ssl=dict(
            simclr=dict(config=c('simclr'), cfg_options={'train_dataloader.dataset.indices': 64}),
            byol=dict(checkpoint=str(given))),
        attacks=dict(
            badencoder=dict(type='finetune', config=c('badencoder'), evaluate='badencoder',
                            cfg_options=dict(model=dict(lambda1=2.0))),
            ctrl=dict(type='poison', config=dict(simclr=c('ctrl_simclr'), byol=c('ctrl_byol')),
                      evaluate='ctrl')),
        defenses=dict(
            bmaiu=dict(config=c('bmaiu'), tool='train', cfg_options={'model.u2': 5.0}),
            clp=dict(config=c('clp'), tool='test')),
        studies=dict(
            main=dict(table='grid', ssl=['simclr', 'byol'], attacks=['badencoder', 'ctrl'],
                      defenses=['bmaiu']),
            extra=dict(table='rows', ssl=['simclr'], attacks=['badencoder'],
                       defenses=['clp']))))


# ------------------------------------------------------------------------------------------
# expansion
# ------------------------------------------------------------------------------------------
def test_expand_order_dirs_and_options(tmp_path):
    steps = expand(_pipeline_cfg(tmp_path), str(tmp_path / 'wd'))
    assert [s.name for s in steps] == [
        'simclr/clean/none', 'simclr/badencoder/none', 'simclr/badencoder/bmaiu',
        'simclr/badencoder/clp', 'simclr/ctrl/none', 'simclr/ctrl/bmaiu',
        'byol/badencoder/none', 'byol/badencoder/bmaiu', 'byol/ctrl/none', 'byol/ctrl/bmaiu']
    by = {s.name: s for s in steps}
    assert [s.kind for s in steps[:5]] == ['pretrain', 'attack', 'defense', 'defense', 'poison']
    assert by['simclr/badencoder/clp'].tool == 'test'
    assert by['simclr/badencoder/bmaiu'].work_dir == str(tmp_path / 'wd/simclr/badencoder/bmaiu')
    # dependencies: fine-tune attacks start from the clean encoder (pretrained or given),
    # defenses from the attack's; poisoned pretraining from nothing
    assert by['simclr/badencoder/none'].upstream == 'simclr/clean/none'
    assert by['byol/badencoder/none'].upstream is None
    assert by['byol/badencoder/none'].encoder == str(tmp_path / 'given_clean.pth')
    assert by['simclr/ctrl/none'].upstream is None
    assert by['simclr/ctrl/bmaiu'].upstream == 'simclr/ctrl/none'
    assert by['byol/ctrl/none'].config.endswith('ctrl_byol.py')
    # option layers: all -> kind -> entry -> evaluate_attack
    assert by['simclr/clean/none'].cfg_options == {
        'val_dataloader.dataset.indices': 100, 'train_cfg.max_epochs': 2,
        'train_dataloader.dataset.indices': 64, 'evaluate_attack': ['badencoder', 'ctrl']}
    assert by['simclr/badencoder/none'].cfg_options == {
        'val_dataloader.dataset.indices': 100, 'train_cfg.max_epochs': 3,
        'model.lambda1': 2.0, 'evaluate_attack': 'badencoder'}
    assert by['simclr/ctrl/bmaiu'].cfg_options == {
        'val_dataloader.dataset.indices': 100, 'train_cfg.max_epochs': 4, 'model.u2': 5.0,
        'evaluate_attack': 'ctrl'}
    # the same config gives the same plan
    again = expand(_pipeline_cfg(tmp_path), str(tmp_path / 'wd'))
    assert [(s.name, s.cfg_options) for s in again] == [(s.name, s.cfg_options) for s in steps]


def test_commands_and_option_formatting(tmp_path):
    steps = expand(_pipeline_cfg(tmp_path), str(tmp_path / 'wd'))
    by = {s.name: s for s in steps}
    cmd = by['simclr/badencoder/bmaiu'].command('py', 'tools', '/x/epoch_3.pth')
    assert cmd[:5] == ['py', 'tools/train.py', by['simclr/badencoder/bmaiu'].config,
                       '--work-dir', str(tmp_path / 'wd/simclr/badencoder/bmaiu')]
    assert cmd[-1] == 'encoder_checkpoint=/x/epoch_3.pth' and 'model.u2=5.0' in cmd
    test_cmd = by['simclr/badencoder/clp'].command('py', 'tools', '/x/e.pth', resume=True)
    assert test_cmd[1:4] == ['tools/test.py', by['simclr/badencoder/clp'].config, '/x/e.pth']
    assert '--resume' not in test_cmd
    assert options_to_args(flatten_options(dict(
        model=dict(custom_trigger=dict(position=[2, 2], size=8)), flag=True, none=None,
        ratio=0.05, names=['a', 'b'], pair=(1, 2)))) == [
        'model.custom_trigger.position=[2,2]', 'model.custom_trigger.size=8', 'flag=True',
        'none=None', 'ratio=0.05', 'names=[a,b]', 'pair=(1,2)']
    with pytest.raises(ConfigValueError, match='commas'):
        options_to_args({'x': 'a,b'})


def test_bad_pipeline_configs(tmp_path):
    cfg = _pipeline_cfg(tmp_path)
    cfg.attacks.ctrl.type = 'weird'
    with pytest.raises(ConfigValueError, match='type'):
        expand(cfg)
    cfg = _pipeline_cfg(tmp_path)
    cfg.studies.main.defenses = ['nope']
    with pytest.raises(ConfigValueError, match='nope'):
        expand(cfg)
    cfg = _pipeline_cfg(tmp_path)
    cfg.defenses.bmaiu.typo = 1
    with pytest.raises(ConfigValueError, match='typo'):
        expand(cfg)


def test_select_keeps_upstream_steps(tmp_path):
    steps = expand(_pipeline_cfg(tmp_path), str(tmp_path / 'wd'))
    assert [s.name for s in select(steps, ['simclr/badencoder/clp'])] == [
        'simclr/clean/none', 'simclr/badencoder/none', 'simclr/badencoder/clp']


# ------------------------------------------------------------------------------------------
# running
# ------------------------------------------------------------------------------------------
def _calls(step):
    path = osp.join(step.work_dir, 'calls.txt')
    if not osp.isfile(path):
        return []
    return [json.loads(line) for line in open(path)]


def test_run_skip_if_done_and_resume(tmp_path, fake_tools):
    steps = expand(_pipeline_cfg(tmp_path), str(tmp_path / 'wd'))
    out = io.StringIO()
    results = PipelineRunner(steps, tools_dir=fake_tools, stream=out).run()
    assert [r.status for r in results] == ['done'] * len(steps)
    assert all(is_done(s) for s in steps)
    text = out.getvalue()
    assert '[ 1/10] simclr/clean/none (pretrain) starting' in text
    assert '9 more to run after it' in text and 'fake progress line' in text
    by = {s.name: s for s in steps}
    # the attack got the clean step's checkpoint, the defense the attack's
    clean_ckpt = osp.join(by['simclr/clean/none'].work_dir, 'epoch_1.pth')
    assert _calls(by['simclr/badencoder/none'])[0]['opts']['encoder_checkpoint'] == clean_ckpt
    assert _calls(by['simclr/badencoder/clp'])[0]['argv'][1] == osp.join(
        by['simclr/badencoder/none'].work_dir, 'epoch_1.pth')
    marker = json.load(open(by['simclr/badencoder/none'].marker_file))
    assert marker['status'] == 'done' and marker['checkpoint'].endswith('epoch_1.pth')
    assert 'Epoch(train)' in open(by['simclr/badencoder/none'].log_file).read()

    # a second invocation runs nothing
    out = io.StringIO()
    results = PipelineRunner(steps, tools_dir=fake_tools, stream=out).run()
    assert [r.status for r in results] == ['cached'] * len(steps)
    assert all(len(_calls(s)) == 1 for s in steps)
    assert '10 done earlier, 0 to run' in out.getvalue()

    # an interrupted training step (checkpoint, no record) resumes with --resume; the steps
    # that start from it run again, the others stay cached
    os.remove(by['simclr/ctrl/none'].marker_file)
    results = PipelineRunner(steps, tools_dir=fake_tools, stream=io.StringIO()).run()
    status = {r.step.name: r.status for r in results}
    assert status['simclr/ctrl/none'] == 'done' and status['simclr/ctrl/bmaiu'] == 'done'
    assert sum(v == 'cached' for v in status.values()) == 8
    assert '--resume' in _calls(by['simclr/ctrl/none'])[-1]['argv']


def test_live_status_lines_and_step_summaries(tmp_path, fake_tools):
    """A step that runs for a while gets status lines (here every 0.2 s); a finished step's
    line carries its headline metrics."""
    cfg = Config(dict(
        ssl=dict(simclr=dict(config=_conf(tmp_path, 'simclr', {'sleep': 1.5, 'metrics': {
            'BA': 36.0}}))),
        attacks=dict(badencoder=dict(type='finetune', evaluate='badencoder', config=_conf(
            tmp_path, 'bad', {'metrics': {'BA': 35.75, 'ASR': 87.48, 'PA': 2.28,
                                          'triggers': 'badencoder'}}))),
        estimates={'*/clean/none': 2, '*': 1}))
    steps = expand(cfg, str(tmp_path / 'wd'))
    out = io.StringIO()
    results = PipelineRunner(steps, tools_dir=fake_tools, stream=out, interval=0.2,
                             estimates=cfg.estimates).run()
    assert [r.status for r in results] == ['done', 'done']
    text = out.getvalue()
    status = [ln for ln in text.splitlines() if ln.startswith('    [1/2] simclr/clean/none  ')]
    assert len(status) >= 3, text
    assert 'epoch 1 [1/1]' in status[-1] and '(ETA ' in status[-1]
    assert '[1/2] simclr/clean/none: done in 0:00:0' in text and ': BA 36.00\n' in text
    assert '[2/2] simclr/badencoder/none: done in ' in text
    assert text.rstrip().count('BA 35.75 ASR 87.48 PA 2.28') == 1
    assert 'eta: 0:00:01' in open(steps[0].log_file).read()


def test_failing_step_is_reported_and_dependents_skipped(tmp_path, fake_tools):
    cfg = _pipeline_cfg(tmp_path, fail=('badencoder',))
    cfg.defenses.clp.config = str(tmp_path / 'confs' / 'missing_clp.py')
    steps = expand(cfg, str(tmp_path / 'wd'))
    out = io.StringIO()
    results = PipelineRunner(steps, tools_dir=fake_tools, stream=out).run()
    status = {r.step.name: r.status for r in results}
    assert status == {
        'simclr/clean/none': 'done', 'simclr/badencoder/none': 'failed',
        'simclr/badencoder/bmaiu': 'skipped', 'simclr/badencoder/clp': 'skipped',
        'simclr/ctrl/none': 'done', 'simclr/ctrl/bmaiu': 'done',
        'byol/badencoder/none': 'failed', 'byol/badencoder/bmaiu': 'skipped',
        'byol/ctrl/none': 'done', 'byol/ctrl/bmaiu': 'done'}
    failed = next(r for r in results if r.step.name == 'simclr/badencoder/none')
    log = failed.step.log_file
    assert failed.message == 'exit status 2' and 'error: boom' in open(log).read()
    text = out.getvalue()
    assert 'FAILED after 0:00:0' in text and f'(log: {log})' in text
    assert f'  failed: simclr/badencoder/none: exit status 2 (log: {log})' in text
    assert 'skipped: simclr/badencoder/bmaiu: upstream simclr/badencoder/none failed' in text
    # a failed step is retried by the next run; the missing config fails with its own message
    cfg.studies.main.attacks = ['ctrl']
    cfg.studies.extra = dict(table='rows', ssl=['byol'], attacks=['ctrl'], defenses=['clp'])
    results = PipelineRunner(expand(cfg, str(tmp_path / 'wd')), tools_dir=fake_tools,
                             stream=io.StringIO()).run()
    clp = next(r for r in results if r.step.name == 'byol/ctrl/clp')
    assert clp.status == 'failed' and clp.message.startswith('config not found')
    assert 'config not found' in open(clp.step.log_file).read()


# ------------------------------------------------------------------------------------------
# reports
# ------------------------------------------------------------------------------------------
def _write(step, metrics):
    os.makedirs(step.work_dir, exist_ok=True)
    with open(step.metrics_file, 'w') as f:
        json.dump(metrics, f)


def _report_cfg(tmp_path):
    cfg = _pipeline_cfg(tmp_path)
    cfg.ssl.simclr.name = 'SimCLR'
    cfg.attacks.badencoder.name = 'BadEncoder'
    cfg.defenses.bmaiu.name = 'BMAIU'
    cfg.studies = dict(
        t3=dict(title='Table 3', table='grid', ssl=['simclr'], attacks=['badencoder', 'ctrl'],
                defenses=['bmaiu']),
        t6=dict(title='Table 6', table='rows', ssl=['simclr'], attacks=['badencoder'],
                defenses=['bmaiu', 'clp'], extra=['CCS']))
    return cfg


def _defense_metrics(ba0, asr0, pa0, ba2, asr2, pa2, trig):
    return {'suspect': {'BA': ba0, 'ASR': asr0, 'PA': pa0, 'triggers': trig},
            'implanted': {'BA': 40.0, 'ASR': [50.0, 90.0], 'PA': [10.0, 5.0],
                          'triggers': [trig, 'custom'], 'reference_class': 8},
            'defended': {'BA': ba2, 'ASR': [asr2, 3.0], 'PA': [pa2, 45.0],
                         'triggers': [trig, 'custom']},
            'BTS': 0.91, 'BTS_clean': 0.5, 'CCS': 0.96, 'trigger_shift_f1': 0.99}


def _synthetic_runs(tmp_path):
    cfg = _report_cfg(tmp_path)
    steps = expand(cfg, str(tmp_path / 'wd'))
    by = {s.name: s for s in steps}
    _write(by['simclr/clean/none'], {'BA': 60.0, 'ASR': [4.0, 10.0], 'PA': [50.0, 40.0],
                                     'triggers': ['badencoder', 'ctrl']})
    _write(by['simclr/badencoder/none'], {'BA': 58.0, 'ASR': 90.0, 'PA': 8.0,
                                          'ASR_all': 91.0, 'target': 9,
                                          'triggers': 'badencoder'})
    _write(by['simclr/badencoder/bmaiu'],
           _defense_metrics(58.0, 90.0, 8.0, 56.0, 10.0, 50.0, 'badencoder'))
    _write(by['simclr/badencoder/clp'], {
        'suspect': {'BA': 58.0, 'ASR': 90.0, 'PA': 8.0, 'triggers': 'badencoder'},
        'defended': {'BA': 50.0, 'ASR': 30.0, 'PA': 35.0, 'triggers': 'badencoder'},
        'PL1': 0.125})
    _write(by['simclr/ctrl/none'], {'BA': 57.0, 'ASR': 70.0, 'PA': 20.0, 'triggers': 'ctrl'})
    # simclr/ctrl/bmaiu did not run: its cells stay empty
    return cfg, steps


def test_results_csv_exact(tmp_path):
    cfg, steps = _synthetic_runs(tmp_path)
    paths = write_reports(cfg, steps, str(tmp_path / 'wd'))
    rows = list(csv.DictReader(open(paths['csv'])))
    key = {(r['ssl'], r['attack'], r['defense'], r['role'], r['trigger']): r for r in rows}
    assert len(rows) == 2 + 1 + 5 + 2 + 1
    r = key[('simclr', 'badencoder', 'none', 'attacked', 'badencoder')]
    assert (r['BA'], r['ASR'], r['PA'], r['ASR_all'], r['target']) == (
        '58.0', '90.0', '8.0', '91.0', '9')
    assert r['metrics'] == osp.join(str(tmp_path), 'wd/simclr/badencoder/none/metrics.json')
    r = key[('simclr', 'badencoder', 'bmaiu', 'defended', 'custom')]
    assert (r['BA'], r['ASR'], r['PA'], r['BTS'], r['CCS']) == ('56.0', '3.0', '45.0', '0.91',
                                                                '0.96')
    assert r['extra'] == 'trigger_shift_f1=0.99'
    r = key[('simclr', 'badencoder', 'bmaiu', 'implanted', 'badencoder')]
    assert r['extra'] == 'reference_class=8;trigger_shift_f1=0.99'
    assert key[('simclr', 'badencoder', 'clp', 'defended', 'badencoder')]['PL1'] == '0.125'
    assert key[('simclr', 'clean', 'none', 'clean', 'ctrl')]['ASR'] == '10.0'
    assert list(rows[0]) == ['seed', 'ssl', 'attack', 'defense', 'role', 'trigger', 'target', 'BA',
                             'ASR', 'PA', 'ASR_all', 'BTS', 'BTS_clean', 'BTS_gap', 'CCS',
                             'PL1', 'audit_ASR', 'audit_collapse', 'extra', 'metrics']


def test_results_md_tables_exact(tmp_path):
    cfg, steps = _synthetic_runs(tmp_path)
    md = results_markdown(cfg, collect_runs(steps)).splitlines()
    i = md.index('## Table 3')
    assert md[i + 2:i + 7] == [
        '| SSL | attack | None BA | None ASR | None PA | BMAIU BA | BMAIU ASR | BMAIU PA |',
        '|---|---|---|---|---|---|---|---|',
        '| SimCLR | BadEncoder | 58.00 | 90.00 | 8.00 | 56.00 | 10.00 | 50.00 |',
        '| SimCLR | ctrl | 57.00 | 70.00 | 20.00 | — | — | — |',
        '| AVE |  | 57.50 | 80.00 | 14.00 | 56.00 | 10.00 | 50.00 |']
    i = md.index('## Table 6')
    assert md[i + 2:i + 6] == [
        '| defense | before BA | before ASR | before PA | after BA | after ASR | after PA | CCS |',
        '|---|---|---|---|---|---|---|---|',
        '| BMAIU | 58.00 | 90.00 | 8.00 | 56.00 | 10.00 | 50.00 | 0.96 |',
        '| clp | 58.00 | 90.00 | 8.00 | 50.00 | 30.00 | 35.00 | — |']
    i = md.index('## Clean encoders')
    assert md[i + 2:i + 5] == ['| SSL | BA | badencoder ASR | ctrl ASR |', '|---|---|---|---|',
                               '| SimCLR | 60.00 | 4.00 | 10.00 |']


def test_per_target_table_and_heatmap(tmp_path):
    cfg = Config(dict(
        ssl=dict(simclr=dict(config='x.py')),
        attacks=dict(multitarget=dict(type='finetune', config='y.py', evaluate='multitarget')),
        defenses=dict(at0=dict(config='z.py', name='AT0')),
        studies=dict(t2=dict(title='Table 2', table='per_target', metrics=['ASR']))))
    steps = expand(cfg, str(tmp_path / 'wd'))
    by = {s.name: s for s in steps}
    trig = ['target0', 'target1', 'target2']
    _write(by['simclr/multitarget/none'], {'BA': 80.0, 'ASR': [70.0, 90.0, 80.0],
                                           'PA': [1.0, 2.0, 3.0], 'target': [0, 1, 2],
                                           'triggers': trig})
    _write(by['simclr/multitarget/at0'], {
        'suspect': {'BA': 80.0, 'ASR': [70.0, 90.0, 80.0], 'target': [0, 1, 2],
                    'triggers': trig},
        'defended': {'BA': 79.0, 'ASR': [10.0, 12.0, 8.0], 'PA': [60.0, 61.0, 62.0],
                     'target': [0, 1, 2], 'triggers': trig}})
    md = results_markdown(cfg, collect_runs(steps)).splitlines()
    i = md.index('## Table 2')
    assert md[i + 2:i + 9] == [
        '| attack target | None ASR | AT0 ASR |', '|---|---|---|',
        '| Target 0 | 70.00 | 10.00 |', '| Target 1 | 90.00 | 12.00 |',
        '| Target 2 | 80.00 | 8.00 |', '| AVE | 80.00 | 10.00 |', '| BA | 80.00 | 79.00 |']
    figs = make_figures(cfg, steps, str(tmp_path / 'figs'), tsne=False)
    assert [osp.basename(f) for f in figs] == ['heatmap_t2.png']
    assert open(figs[0], 'rb').read(8) == PNG_MAGIC


def _seeded_cfg(tmp_path, seeds=(0, 1)):
    cfg = _report_cfg(tmp_path)
    cfg.seeds = list(seeds)
    return cfg


def test_seeds_expand_one_replicate_per_seed(tmp_path):
    one = expand(_pipeline_cfg(tmp_path), str(tmp_path / 'wd'))
    cfg = _pipeline_cfg(tmp_path)
    cfg.seeds = [3, 0]
    steps = expand(cfg, str(tmp_path / 'wd'))
    assert [s.name for s in steps] == ([f'seed3/{s.name}' for s in one]
                                       + [f'seed0/{s.name}' for s in one])
    by = {s.name: s for s in steps}
    s = by['seed3/simclr/badencoder/bmaiu']
    assert (s.seed, s.cell, s.upstream) == (3, 'simclr/badencoder/bmaiu',
                                           'seed3/simclr/badencoder/none')
    assert s.work_dir == str(tmp_path / 'wd/seed3/simclr/badencoder/bmaiu')
    # every step of a replicate (pretraining included) runs with its seed, last (it wins)
    base = {x.name: x.cfg_options for x in one}
    for x in steps:
        assert x.cfg_options == {**base[x.cell], 'randomness.seed': x.seed}
        assert list(x.cfg_options)[-1] == 'randomness.seed'
    assert by['seed0/byol/badencoder/none'].upstream is None
    # --only names a cell (every seed) or one seed's step
    assert [x.name for x in select(steps, ['simclr/badencoder/clp'])] == [
        f'seed{k}/simclr/{c}' for k in (3, 0) for c in ('clean/none', 'badencoder/none',
                                                        'badencoder/clp')]
    assert [x.name for x in select(steps, ['seed0/simclr/badencoder/none'])] == [
        'seed0/simclr/clean/none', 'seed0/simclr/badencoder/none']
    for bad in ([], [0, 0], [-1], [1.5], 'x', [True]):
        cfg.seeds = bad
        with pytest.raises(ConfigValueError, match='seeds must be'):
            expand(cfg)


def test_seeds_offset_the_models_own_seeds(tmp_path):
    """Seed k offsets the model's seed of every step, and a defense's trigger / search seeds,
    by k (seed 0 is the single run); the attacker's trigger seeds stay (the evaluator's preset
    must match)."""
    cfg = Config.fromfile(osp.join(REPO, 'configs/pipelines/quickstart.py'))
    cfg.seeds = [0, 2]
    by = {s.name: s for s in expand(cfg, str(tmp_path))}
    seeds = {n: {k: v for k, v in s.cfg_options.items() if k.endswith('seed')}
             for n, s in by.items()}
    assert seeds['seed2/simclr/clean/none'] == {'randomness.seed': 2}
    assert seeds['seed2/simclr/badencoder/none'] == {'model.seed': 102, 'randomness.seed': 2}
    assert seeds['seed0/simclr/badencoder/none'] == {'model.seed': 100, 'randomness.seed': 0}
    assert seeds['seed2/simclr/badencoder/bmaiu'] == {
        'model.custom_trigger.seed': 2027, 'model.seed': 2, 'randomness.seed': 2}
    assert seeds['seed2/simclr/badencoder/searched_trigger'] == {
        'model.trigger.seed': 2027, 'model.seed': 2, 'randomness.seed': 2}
    assert seeds['seed2/simclr/badencoder/clp'] == {'randomness.seed': 2}
    # an entry's own model.seed is the base the offset adds to
    cfg.defenses.finetune.cfg_options = {**cfg.defenses.finetune.cfg_options, 'model.seed': 7}
    by = {s.name: s for s in expand(cfg, str(tmp_path))}
    assert by['seed2/simclr/badencoder/finetune'].cfg_options['model.seed'] == 9


def test_seeds_reach_the_runs(tmp_path, fake_tools):
    cfg = Config(dict(
        ssl=dict(simclr=dict(config=_conf(tmp_path, 'simclr', {'metrics': {'BA': 1.0}}))),
        attacks=dict(badencoder=dict(type='finetune', evaluate='badencoder',
                                     config=_conf(tmp_path, 'bad', {'metrics': {'BA': 2.0}}))),
        seeds=[0, 1]))
    steps = expand(cfg, str(tmp_path / 'wd'))
    results = PipelineRunner(steps, tools_dir=fake_tools, stream=io.StringIO()).run()
    assert [r.status for r in results] == ['done'] * 4
    by = {s.name: s for s in steps}
    for k in (0, 1):
        call = _calls(by[f'seed{k}/simclr/badencoder/none'])[0]['opts']
        assert call['randomness.seed'] == str(k)
        assert call['encoder_checkpoint'] == osp.join(
            str(tmp_path), f'wd/seed{k}/simclr/clean/none/epoch_1.pth')


def test_seeds_tables_mean_and_spread(tmp_path):
    cfg = _seeded_cfg(tmp_path)
    steps = expand(cfg, str(tmp_path / 'wd'))
    by = {s.name: s for s in steps}
    for k, (asr0, ba2, asr2) in enumerate([(90.0, 56.0, 10.0), (80.0, 54.0, 20.0)]):
        _write(by[f'seed{k}/simclr/clean/none'], {
            'BA': 60.0 + 2 * k, 'ASR': [4.0, 10.0], 'PA': [50.0, 40.0],
            'triggers': ['badencoder', 'ctrl']})
        _write(by[f'seed{k}/simclr/badencoder/none'], {
            'BA': 58.0, 'ASR': asr0, 'PA': 8.0 + 4 * k, 'triggers': 'badencoder'})
        _write(by[f'seed{k}/simclr/badencoder/bmaiu'], dict(
            _defense_metrics(58.0, asr0, 8.0, ba2, asr2, 50.0, 'badencoder'), CCS=0.9 + .04 * k))
    # one seed of CTRL only
    _write(by['seed1/simclr/ctrl/none'], {'BA': 57.0, 'ASR': 70.0, 'PA': 20.0,
                                          'triggers': 'ctrl'})
    md = results_markdown(cfg, collect_runs(steps)).splitlines()
    assert any(line.startswith('Each cell: mean ± sample standard deviation over the seeds '
                               '[0, 1]') for line in md)
    i = md.index('## Table 3')
    assert md[i + 4:i + 7] == [
        '| SimCLR | BadEncoder | 58.00 ± 0.00 | 85.00 ± 7.07 | 10.00 ± 2.83 | 55.00 ± 1.41 | '
        '15.00 ± 7.07 | 50.00 ± 0.00 |',
        '| SimCLR | ctrl | 57.00 (n=1) | 70.00 (n=1) | 20.00 (n=1) | — | — | — |',
        '| AVE |  | 57.50 | 77.50 | 15.00 | 55.00 | 15.00 | 50.00 |']
    i = md.index('## Table 6')
    assert md[i + 4] == ('| BMAIU | 58.00 ± 0.00 | 85.00 ± 7.07 | 10.00 ± 2.83 | 55.00 ± 1.41 | '
                         '15.00 ± 7.07 | 50.00 ± 0.00 | 0.92 ± 0.02828 |')
    assert md[i + 5].startswith('| clp | 58.00 ± 0.00 | 85.00 ± 7.07 | 10.00 ± 2.83 | — |')
    i = md.index('## Clean encoders')
    assert md[i + 4] == '| SimCLR | 61.00 ± 1.41 | 4.00 ± 0.00 | 10.00 ± 0.00 |'
    assert '`<work_dir>/seed<k>/<ssl>/<attack>/<defense>/metrics.json`' in '\n'.join(md)
    rows = list(csv.DictReader(open(write_reports(cfg, steps, str(tmp_path / 'wd'))['csv'])))
    assert sorted({(r['seed'], r['attack']) for r in rows}) == [
        ('0', 'badencoder'), ('0', 'clean'), ('1', 'badencoder'), ('1', 'clean'),
        ('1', 'ctrl')]


def test_audit_columns_in_the_tables(tmp_path):
    """Audited encoders add `audit ASR` / `audit collapse` columns to every table shape and
    to results.csv; without an audit the tables stay as they were (the tests above)."""
    cfg = _report_cfg(tmp_path)
    steps = expand(cfg, str(tmp_path / 'wd'))
    by = {s.name: s for s in steps}
    _write(by['simclr/clean/none'], {'BA': 60.0, 'ASR': [4.0, 10.0], 'triggers': [
        'badencoder', 'ctrl'], 'audit_ASR': 12.5, 'audit_collapse': 0.41})
    _write(by['simclr/badencoder/none'], {'BA': 58.0, 'ASR': 90.0, 'PA': 8.0,
                                          'triggers': 'badencoder', 'audit_ASR': 88.0,
                                          'audit_collapse': 0.9312})
    m = _defense_metrics(58.0, 90.0, 8.0, 56.0, 10.0, 50.0, 'badencoder')
    m['defended'].update(audit_ASR=70.25, audit_collapse=0.85)
    _write(by['simclr/badencoder/bmaiu'], m)
    md = results_markdown(cfg, collect_runs(steps)).splitlines()
    assert any(line.startswith('audit ASR / audit collapse: the residual-backdoor audit')
               for line in md)
    i = md.index('## Table 3')
    assert md[i + 2] == ('| SSL | attack | None BA | None ASR | None PA | None audit ASR | '
                         'None audit collapse | BMAIU BA | BMAIU ASR | BMAIU PA | '
                         'BMAIU audit ASR | BMAIU audit collapse |')
    assert md[i + 4] == ('| SimCLR | BadEncoder | 58.00 | 90.00 | 8.00 | 88.00 | 0.9312 | '
                         '56.00 | 10.00 | 50.00 | 70.25 | 0.8500 |')
    i = md.index('## Table 6')
    assert md[i + 4] == ('| BMAIU | 58.00 | 90.00 | 8.00 | 88.00 | 0.9312 | 56.00 | 10.00 | '
                         '50.00 | 70.25 | 0.8500 | 0.96 |')
    i = md.index('## Clean encoders')
    assert md[i + 2] == ('| SSL | BA | badencoder ASR | ctrl ASR | audit ASR | '
                         'audit collapse |')
    assert md[i + 4] == '| SimCLR | 60.00 | 4.00 | 10.00 | 12.50 | 0.4100 |'
    rows = list(csv.DictReader(open(write_reports(cfg, steps, str(tmp_path / 'wd'))['csv'])))
    r = next(r for r in rows if r['defense'] == 'bmaiu' and r['role'] == 'defended'
             and r['trigger'] == 'badencoder')
    assert (r['audit_ASR'], r['audit_collapse']) == ('70.25', '0.85')


def test_seeds_per_target_table(tmp_path):
    cfg = Config(dict(
        ssl=dict(simclr=dict(config='x.py')),
        attacks=dict(multitarget=dict(type='finetune', config='y.py', evaluate='multitarget')),
        defenses=dict(at0=dict(config='z.py', name='AT0')), seeds=[0, 1, 2],
        studies=dict(t2=dict(title='Table 2', table='per_target', metrics=['ASR', 'ASR_all']))))
    steps = expand(cfg, str(tmp_path / 'wd'))
    for s in steps:
        if s.defense == 'none' and s.attack == 'multitarget':
            _write(s, {'BA': 80.0 + s.seed, 'ASR': [70.0 + s.seed, 90.0], 'target': [0, 1],
                       'ASR_all': [71.0, 91.0], 'triggers': ['t0', 't1']})
    md = results_markdown(cfg, collect_runs(steps)).splitlines()
    i = md.index('## Table 2')
    assert md[i + 2:i + 8] == [
        '| attack target | None ASR | None ASR_all | AT0 ASR | AT0 ASR_all |',
        '|---|---|---|---|---|',
        '| Target 0 | 71.00 ± 1.00 | 71.00 ± 0.00 | — | — |',
        '| Target 1 | 90.00 ± 0.00 | 91.00 ± 0.00 | — | — |',
        '| AVE | 80.50 | 81.00 | — | — |', '| BA | 81.00 ± 1.00 |  | — |  |']
    cfg.studies.t2.metrics = ['ASR', 'BTS']
    with pytest.raises(ConfigValueError, match='per_target'):
        expand(cfg)


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------
def _png_ok(path):
    return osp.getsize(path) > 1000 and open(path, 'rb').read(8) == PNG_MAGIC


def test_figure_functions_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    panels = [dict(title=f'p{i}', clean=rng.normal(size=(40, 16)),
                   triggered=rng.normal(size=(40, 16)) + 3, labels=np.arange(40) % 10)
              for i in range(2)]
    assert _png_ok(plot_tsne(panels, str(tmp_path / 'tsne.png')))
    assert _png_ok(plot_sweep([10, 1, 5], {'BA': [70, 72, 71], 'ASR': [5, 40, None]},
                              str(tmp_path / 'sweep.png'), xlabel='model.u2'))
    assert _png_ok(plot_heatmap([[90, 10], [80, None]], ['Target 0', 'Target 1'],
                                ['None', 'BMAIU'], str(tmp_path / 'heat.png')))


def test_sweep_figure_from_runs(tmp_path):
    cfg = Config(dict(
        ssl=dict(simclr=dict(config='x.py')),
        attacks=dict(estas=dict(type='finetune', config='y.py', evaluate='estas')),
        defenses={'bmaiu': dict(config='z.py'),
                  'bmaiu_u1_5': dict(config='z.py', cfg_options={'model.u1': 5.0})},
        studies=dict(fig4=dict(table='rows', sweep=dict(key='model.u1', default=1.0,
                                                         metrics=['BTS', 'CCS'])))))
    steps = expand(cfg, str(tmp_path / 'wd'))
    by = {s.name: s for s in steps}
    _write(by['simclr/estas/bmaiu'], _defense_metrics(70., 90., 5., 68., 9., 60., 'estas'))
    _write(by['simclr/estas/bmaiu_u1_5'], _defense_metrics(70., 90., 5., 60., 7., 55., 'estas'))
    md = results_markdown(cfg, collect_runs(steps)).splitlines()
    assert '| 5.0 | 70.00 | 90.00 | 5.00 | 60.00 | 7.00 | 55.00 |' in md
    figs = make_figures(cfg, steps, str(tmp_path / 'figs'), tsne=False)
    assert [osp.basename(f) for f in figs] == ['sweep_fig4.png'] and _png_ok(figs[0])


def test_encode_clean_triggered_and_tsne(tmp_path, fake_cifar):
    import torch
    from mmpretrain.registry import MODELS
    root, _ = fake_cifar
    backbone = dict(type='ResNet_CIFAR', depth=18, stem_channels=16, base_channels=16,
                    norm_cfg=dict(type='BN'))
    torch.manual_seed(0)
    net = MODELS.build(backbone)
    ckpt = str(tmp_path / 'enc.pth')
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in net.state_dict().items()}}, ckpt)
    out = encode_clean_triggered(ckpt, backbone, 'badencoder', num_images=24, data_root=root,
                                 batch_size=10)
    assert out['clean'].shape == (24, 128) and out['triggered'].shape == (24, 128)
    assert out['labels'].shape == (24,) and out['target'] == 9
    assert not np.allclose(out['clean'], out['triggered'])
    again = encode_clean_triggered(ckpt, backbone, 'badencoder', num_images=24, data_root=root,
                                   batch_size=24)
    np.testing.assert_allclose(again['clean'], out['clean'], rtol=1e-4, atol=1e-5)
    assert _png_ok(plot_tsne([dict(title='x', **out)], str(tmp_path / 't.png'), ncols=1))


# ------------------------------------------------------------------------------------------
# shipped pipeline configs and the CLI
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(REPO, 'configs/pipelines/*.py'))))
def test_shipped_pipelines_expand(path, tmp_path):
    cfg = Config.fromfile(path)
    steps = expand(cfg, str(tmp_path / 'wd'))
    assert steps and len({s.name for s in steps}) == len(steps)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        missing = sorted({s.config for s in steps if not osp.isfile(s.config)})
        assert not missing, missing
        lines = PipelineRunner(steps, stream=io.StringIO()).describe()
    finally:
        os.chdir(cwd)
    assert lines[0] == f'pipeline: {len(steps)} steps' and len(lines) == 1 + 2 * len(steps)


def test_quickstart_plan(tmp_path):
    cfg = Config.fromfile(osp.join(REPO, 'configs/pipelines/quickstart.py'))
    steps = expand(cfg, str(tmp_path))
    assert [s.name for s in steps] == ['simclr/clean/none'] + [
        f'simclr/badencoder/{d}' for d in ('none', 'clp', 'bmaiu', 'searched_trigger', 'finetune')]
    assert all('-w16' in s.config for s in steps)
    # the fast paths on every step; the SSL views made on the device
    assert all(s.cfg_options['channels_last'] is True for s in steps)
    assert steps[0].config.endswith('-devaug_cifar10.py')
    by = {s.name: s for s in steps}
    assert by['simclr/badencoder/none'].cfg_options['model.targets.0.reference.num'] == 50
    searched = by['simclr/badencoder/searched_trigger'].cfg_options
    assert (searched['model.search.steps'], searched['model.restart_steps']) == (200, 50)
    # the opt-in rows: the same steps (same work dirs, so they are reused) plus ESTAS with every
    # defense and SSL-Backdoor and CTRL with CLP and BMAIU
    full_cfg = Config.fromfile(osp.join(REPO, 'configs/pipelines/quickstart_full.py'))
    full = expand(full_cfg, str(tmp_path))
    by = {s.name: s for s in full}
    assert len(full) == 17 and all(by[s.name].work_dir == s.work_dir for s in steps)
    extra = sorted(set(by) - {s.name for s in steps})
    assert extra == sorted([f'simclr/{a}/{d}' for a in ('ctrl', 'sslbackdoor')
                            for d in ('bmaiu', 'clp', 'none')] + [
        f'simclr/estas/{d}' for d in ('none', 'clp', 'bmaiu', 'searched_trigger', 'finetune')])
    assert by['simclr/estas/none'].cfg_options['model.targets.0.reference.num'] == 50
    est = PipelineRunner(full, stream=io.StringIO(), estimates=full_cfg.estimates)
    assert est.progress.estimate(by['simclr/ctrl/none']) == 240.
    assert est.progress.estimate(by['simclr/estas/none']) == 200.
    assert est.progress.estimate(by['simclr/badencoder/none']) == cfg.estimates['*/*/none']


def test_trigger_battery_plan(tmp_path):
    """Every attack family x every defense (control included), three seeds, audited."""
    cfg = Config.fromfile(osp.join(REPO, 'configs/pipelines/trigger_battery_w16.py'))
    steps = expand(cfg, str(tmp_path))
    # plan order: the quickstart's attacks and defenses first (declaration order)
    families = ['badencoder', 'estas', 'drupe', 'multitarget4', 'badencoder-patch4',
                'badencoder-patch14', 'badencoder-blend', 'badencoder-warp', 'badencoder-ctrl']
    defenses = ['none', 'clp', 'bmaiu', 'searched_trigger', 'finetune', 'ibau', 'searched_space',
                'sslcleanse']
    assert [s.name for s in steps if s.seed == 0] == ['seed0/simclr/clean/none'] + [
        f'seed0/simclr/{a}/{d}' for a in families for d in defenses]
    assert len(steps) == 3 * (1 + 9 * 8) and {s.seed for s in steps} == {0, 1, 2}
    assert all(s.cfg_options['test_cfg.audit.enable'] is True for s in steps)
    assert all(s.cfg_options['val_cfg.audit.encoders'] == ['defended'] for s in steps
               if s.kind == 'defense')
    by = {s.name: s for s in steps}
    assert by['seed2/simclr/multitarget4/none'].evaluate == 'multitarget4'
    assert by['seed2/simclr/badencoder-warp/none'].config.endswith(
        'badencoder-warp_resnet18-w16_simclr_1xb256-10e_cifar10.py')
    assert list(cfg.studies) == ['battery'] and cfg.figures.tsne is None


def test_cli_dry_run(tmp_path, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import pipeline as cli
    finally:
        sys.path.pop(0)
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        rc = cli.main(['configs/pipelines/quickstart.py', '--work-dir', str(tmp_path / 'qs'),
                       '--dry-run'])
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith('pipeline: 6 steps')
    assert f'--work-dir {tmp_path}/qs/simclr/badencoder/bmaiu' in out
    assert not osp.exists(tmp_path / 'qs')
    assert cli.main([str(tmp_path / 'nope.py'), '--dry-run']) == 2


def test_tables_leave_out_every_trigger_of_the_defenses_own():
    """The searched-trigger defense probes its patch (``custom``) and each search-space member
    (``custom-window``, ...) beside the attacker's trigger: the tables' ASR / PA are the
    attacker's alone."""
    from bmaiu_plugin.defenses.base import is_own_trigger, own_trigger_name
    from bmaiu_plugin.pipeline.report import attack_metrics
    entry = {'BA': 31.9, 'ASR': [22.26, 10.88, 10.43], 'PA': [23.87, 28.77, 28.1],
             'triggers': ['badencoder', 'custom', 'custom-window']}
    assert attack_metrics(entry) == dict(BA=31.9, ASR=22.26, PA=23.87, audit_ASR=None,
                                         audit_collapse=None)
    assert own_trigger_name() == 'custom' and own_trigger_name('mask') == 'custom-mask'
    assert is_own_trigger('custom-mask') and not is_own_trigger('badencoder-blend')
    assert not is_own_trigger('customs')
