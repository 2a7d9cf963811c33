"""Collect ``metrics.json`` files of several runs into one Markdown table.

usage: python projects/cpu_study/tools/collect_metrics.py NAME=WORK_DIR [NAME=WORK_DIR ...]
       [--out FILE] [--compact ATTACK]   (one row per BMAIU run)

Each WORK_DIR holds a ``metrics.json`` written by the probe loop: flat (one encoder) or with
``suspect`` / ``implanted`` / ``defended`` entries (BMAIU).  One row per (run, encoder): BA, and
ASR / PA per trigger; BMAIU rows add BTS, BTS_clean, CCS.
"""
import argparse
import json
import os.path as osp
import sys

# one copy of the row helpers, shared with the pipeline's reports
from bmaiu_plugin.pipeline.report import COMPACT_HEAD, compact_row, fmt, rows


def _load(spec: str):
    """``NAME=WORK_DIR`` -> ``(name, metrics)``.

    Raises:
        ConfigValueError: The argument is not ``NAME=WORK_DIR``, or the work dir has no
            readable ``metrics.json`` (a JSON object).
    """
    from bmaiu_plugin.utils.errors import ConfigValueError
    from bmaiu_plugin.utils.validate import clip
    name, sep, wd = spec.partition('=')
    if not sep or not name or not wd:
        raise ConfigValueError(f'run {clip(spec)}: write NAME=WORK_DIR')
    path = osp.join(wd, 'metrics.json')
    if not osp.isfile(path):
        raise ConfigValueError(f'{path} not found (run {name}: is {wd} a finished run\'s work '
                               'dir?)')
    try:
        with open(path) as f:
            metrics = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigValueError(f'{path} is not readable JSON ({type(e).__name__}); '
                               'rerun the evaluation that writes it') from None
    if not isinstance(metrics, dict):
        raise ConfigValueError(f'{path} holds no metrics object; rerun the evaluation')
    return name, metrics


def _emit(lines, out) -> int:
    text = '\n'.join(lines)
    print(text)
    if out:
        with open(out, 'w') as f:
            f.write(text + '\n')
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('runs', nargs='+', help='NAME=WORK_DIR')
    p.add_argument('--out', help='write the table here as well')
    p.add_argument('--compact', metavar='ATTACK',
                   help='one row per BMAIU run (suspect / implanted / defended) for this attack')
    args = p.parse_args(argv)
    loaded = [_load(spec) for spec in args.runs]
    if args.compact:
        lines = ['| ' + ' | '.join(COMPACT_HEAD) + ' |', '|' + '---|' * len(COMPACT_HEAD)]
        for name, m in loaded:
            row = compact_row(name, m, args.compact)
            cells = [fmt(v) for v in row[:-3]] + ['' if v is None else f'{v:.4f}' for v in row[-3:]]
            lines.append('| ' + ' | '.join(cells) + ' |')
        return _emit(lines, args.out)
    table = [r for name, m in loaded for r in rows(name, m)]
    trigs = []
    for r in table:
        trigs += [t for t in r['cells'] if t not in trigs]
    head = ['run', 'encoder', 'BA'] + [f'{t} ASR' for t in trigs] + [f'{t} PA' for t in trigs] \
        + ['BTS', 'BTS_clean', 'CCS']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in table:
        vals = [r['run'], r['encoder'], fmt(r['BA'])]
        vals += [fmt(r['cells'].get(t, (None, None))[0]) for t in trigs]
        vals += [fmt(r['cells'].get(t, (None, None))[1]) for t in trigs]
        vals += [fmt(r['BTS']), fmt(r['BTS_clean']), fmt(r['CCS'])]
        lines.append('| ' + ' | '.join(vals) + ' |')
    return _emit(lines, args.out)


if __name__ == '__main__':
    from bmaiu_plugin.apis import run_cli
    sys.exit(run_cli(main))
