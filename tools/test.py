"""Evaluate a checkpoint with the linear-probe backdoor evaluator (BA / ASR / PA).

``mim test bmaiu_plugin CONFIG --checkpoint CKPT`` for a config's own checkpoint, or
``mim test bmaiu_plugin configs/eval/probe_resnet18_cifar10.py --checkpoint PATH --cfg-options
evaluate_attack=NAME`` (mim requires ``--checkpoint``) for any encoder file (loaded as tensors
only).  Writes ``metrics.json`` into the run's timestamped folder and, as the latest copy, the
work dir; earlier results are kept.  Bad input (a missing checkpoint, a work dir that is a file or
not writable, ...) ends in one ``error:`` line, exit status 2.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Probe an encoder: BA / ASR / PA')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint of the config\'s model (load_from); for a config with '
                        'an `encoder_checkpoint` field, the encoder file to probe')
    parser.add_argument('--checkpoint', dest='checkpoint_opt', help='same as the positional')
    parser.add_argument('--work-dir', help='where metrics.json and logs go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. encoder_checkpoint=PATH')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _test(args):
    from mmengine.runner import Runner

    from bmaiu_plugin.apis import finalize_config
    from bmaiu_plugin.engine.results import check_work_dir
    from bmaiu_plugin.utils.errors import CheckpointError
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(args.config))[0])
    ckpt = args.checkpoint or args.checkpoint_opt
    if ckpt is not None and not osp.isfile(ckpt):
        raise CheckpointError(f'checkpoint not found: {ckpt}')
    check_work_dir(cfg.work_dir, args.config)
    if ckpt is not None and 'encoder_checkpoint' in cfg and not cfg.encoder_checkpoint:
        cfg.encoder_checkpoint, ckpt = ckpt, None  # an encoder file: tensors only
    elif ckpt is not None:
        cfg.load_from = ckpt
    cfg = finalize_config(cfg)
    runner = Runner.from_cfg(cfg)
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    if getattr(model, 'encoder_checkpoint', None) and ckpt is None:
        model.init_weights()  # Runner.test() does not initialize weights
    runner.test()


def main(argv=None):
    args = parse_args(argv)
    from bmaiu_plugin.apis import run_cli
    return run_cli(lambda: _test(args))


if __name__ == '__main__':
    sys.exit(main())
