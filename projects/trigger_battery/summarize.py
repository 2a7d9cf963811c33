"""The mean / spread table of ``small_scale.py``'s JSON lines.

    python projects/trigger_battery/summarize.py work_dirs/trigger_battery_small/*.jsonl

One markdown row per (family, defense): suspect and defended BA / ASR / PA as mean ± sd over
the seeds (n given), and the defense's mean wall time.
"""
import argparse
import json
import statistics
from collections import defaultdict


def cell(values) -> str:
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('files', nargs='+')
    args = p.parse_args()
    rows = defaultdict(list)
    for path in args.files:
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    rows[(r['family'], r['defense'])].append(r)
    keys = ('BA', 'ASR', 'PA')
    print('| family | defense | n | suspect BA | suspect ASR | suspect PA | BA | ASR | PA | s |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for (family, defense), rs in sorted(rows.items()):
        before = [cell([r['before'][k] for r in rs]) for k in keys]
        after = [cell([r['after'][k] for r in rs]) for k in keys]
        secs = statistics.mean(r['seconds'] for r in rs)
        print(f'| {family} | {defense.removesuffix(".py")} | {len(rs)} | ' + ' | '.join(before)
              + ' | ' + ' | '.join(after) + f' | {secs:.0f} |')


if __name__ == '__main__':
    main()
