"""Train with a bmaiu_plugin (or any mmpretrain) config.

Run through mim (``mim train bmaiu_plugin CONFIG [--launcher pytorch --gpus N]``) or directly
(``python tools/train.py CONFIG``).  Bad input (missing data, checkpoint or config value, a work
dir that is a file or not writable, a work dir holding an earlier training run without
``--resume``) ends in one ``error:`` line and exit status 2, before any work starts.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train (pretrain / attack / defend) an encoder')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics.json')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or the latest in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed-precision training')
    parser.add_argument('--no-validate', action='store_true', help='skip the probe evaluation')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. encoder_checkpoint=PATH')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    from bmaiu_plugin.apis import finalize_config  # imports (and patches) the plugin
    from bmaiu_plugin.engine.results import latest_checkpoint
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    check_work_dir(cfg.work_dir, args)
    if args.resume == 'auto':
        ckpt = latest_checkpoint(cfg.work_dir)
        cfg.resume, cfg.load_from = ckpt is not None, ckpt
        if ckpt is None and os.environ.get('RANK', '0') == '0':
            print(f'[bmaiu_plugin] --resume: no checkpoint in {cfg.work_dir}, starting a new run',
                  flush=True)
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return finalize_config(cfg)


def check_work_dir(work_dir: str, args) -> None:
    """Refuse, before any work, a work dir or ``--resume`` that cannot give the run asked for.

    The work dir must be a writable folder (it is created); ``--resume FILE`` must exist; without
    ``--resume`` the work dir must not hold an earlier training run's checkpoints.
    """
    from bmaiu_plugin.engine import results
    from bmaiu_plugin.utils.errors import CheckpointError
    if args.resume not in (None, 'auto') and not osp.isfile(args.resume):
        raise CheckpointError(f'--resume checkpoint not found: {args.resume}')
    results.check_work_dir(work_dir, args.config)
    if args.resume is None:
        results.check_new_training(work_dir)


def main(argv=None):
    args = parse_args(argv)
    from bmaiu_plugin.apis import run_cli
    return run_cli(lambda: _train(args))


def _train(args):
    from mmengine.runner import Runner
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else \
        __import__('mmengine.registry', fromlist=['RUNNERS']).RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    sys.exit(main())
