"""Run a pipeline: pretrain -> attack -> defend -> evaluate, then tables and figures.

``mim run bmaiu_plugin pipeline PIPELINE_CONFIG [--work-dir DIR]`` or
``python tools/pipeline.py PIPELINE_CONFIG``.  Each step is a separate ``tools/train.py`` /
``tools/test.py`` process in ``<work-dir>/<ssl>/<attack>/<defense>/`` (log: ``step.log``).
Finished steps are skipped, so running the same command again resumes.  ``--seeds 0 1 2``
runs the plan once per seed (``<work-dir>/seed<k>/...``) and reports mean and spread.  Writes
``results.csv``, ``results.md`` and ``figures/*.png`` in the work dir.  See docs/pipeline.md.

Exit status: 0 when every step succeeded, 1 when some failed or were skipped (the report is
still written), 2 for a bad pipeline config.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Run a BMAIU pipeline (grid of mmengine runs)')
    parser.add_argument('config', help='pipeline config, e.g. configs/pipelines/quickstart.py')
    parser.add_argument('--work-dir', help='root of the step work dirs, the tables and figures '
                        '(default: the config\'s work_dir)')
    parser.add_argument('--dry-run', action='store_true', help='print the plan and exit')
    parser.add_argument('--report-only', action='store_true',
                        help='run nothing: write the tables and figures from finished steps')
    parser.add_argument('--only', nargs='+', metavar='GLOB',
                        help='run only the steps whose name (ssl/attack/defense) matches, and '
                        'the steps they need')
    parser.add_argument('--seeds', nargs='+', type=int, metavar='K',
                        help='run the whole plan once per seed (overrides the config\'s '
                        '`seeds`), in <work-dir>/seed<K>/; the tables show mean and spread')
    parser.add_argument('--no-figures', action='store_true', help='skip the figures')
    parser.add_argument('--no-tsne', action='store_true',
                        help='skip the t-SNE figures (they encode test images)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override keys of the pipeline config')
    return parser.parse_args(argv)


def _pipeline(args, status):
    from bmaiu_plugin.pipeline import (PipelineRunner, expand, make_figures, select,
                                       write_reports)
    from bmaiu_plugin.pipeline.runner import resolve_path
    from bmaiu_plugin.utils.errors import ConfigValueError
    path = resolve_path(args.config)
    if not osp.isfile(path):
        raise ConfigValueError(f'pipeline config not found: {args.config}')
    try:
        cfg = Config.fromfile(path)
    except Exception as e:  # noqa: BLE001  (any fault of the file itself: one line)
        where = f' (line {e.lineno})' if isinstance(e, SyntaxError) and e.lineno else ''
        raise ConfigValueError(f'pipeline config {path} cannot be read: {type(e).__name__}'
                               f'{where}; fix the file') from None
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.seeds is not None:
        cfg.seeds = args.seeds
    work_dir = args.work_dir or cfg.get('work_dir') or 'work_dirs/pipeline'
    steps = expand(cfg, work_dir)
    runner = PipelineRunner(select(steps, args.only), python=cfg.get('python'),
                            estimates=cfg.get('estimates'))
    if args.dry_run:
        print('\n'.join(runner.describe()))
        return
    if not args.report_only:
        results = runner.run()
        status[0] = int(any(r.status in ('failed', 'skipped') for r in results))
    paths = write_reports(cfg, steps, work_dir)
    print(f'[pipeline] tables: {paths["md"]}, {paths["csv"]}', flush=True)
    if not args.no_figures:
        figs = make_figures(cfg, steps, osp.join(work_dir, 'figures'), stream=sys.stdout,
                            tsne=not args.no_tsne)
        for f in figs:
            print(f'[pipeline] figure: {f}', flush=True)


def main(argv=None):
    args = parse_args(argv)
    from bmaiu_plugin.apis import run_cli
    status = [0]
    rc = run_cli(lambda: _pipeline(args, status))
    return rc or status[0]


if __name__ == '__main__':
    sys.exit(main())
