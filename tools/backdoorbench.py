"""Export to / import from BackdoorBench's attack-record format (no BackdoorBench needed).

Export an encoder + linear probe + triggered CIFAR-10 test set as
``OUT_ROOT/record/NAME/attack_result.pt``::

    mim run bmaiu_plugin backdoorbench export ENCODER.pth --out-root bb --name badencoder \
        --attack badencoder [--config configs/eval/probe_preactresnet18_cifar10.py] [--probe FC.pth]

Import a record (loaded as tensors only), report BA / ASR / PA, optionally save its encoder for
this plugin's tools::

    mim run bmaiu_plugin backdoorbench import bb/record/badencoder [--out encoder.pth]

Check that BackdoorBench's own loading procedure builds and scores a record::

    mim run bmaiu_plugin backdoorbench verify bb/record/badencoder

(or ``python tools/backdoorbench.py ...``).  Bad input ends in one ``error:`` line, exit status 2.
See ``docs/backdoorbench.md``.
"""
import argparse
import json
import os.path as osp
import sys

from mmengine.config import Config, DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join('configs', 'eval', 'probe_preactresnet18_cifar10.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export to / import from BackdoorBench attack records')
    sub = parser.add_subparsers(dest='command', required=True)

    ex = sub.add_parser('export', help='encoder + probe + trigger -> attack record')
    ex.add_argument('encoder', help='encoder checkpoint (mmengine checkpoint, state dict or '
                    '.safetensors; loaded as tensors only)')
    ex.add_argument('--out-root', required=True,
                    help='folder that will hold record/NAME/attack_result.pt')
    ex.add_argument('--name', help='record name (default: the attack or trigger name)')
    ex.add_argument('--attack', help='attack preset: badencoder | estas | sslbackdoor | ctrl | '
                    'multitarget')
    ex.add_argument('--trigger-name', help='trigger of a multi-trigger preset (e.g. target3)')
    ex.add_argument('--trigger', help='trigger config as JSON, e.g. \'{"type": "PatchTrigger", '
                    '"size": 4, "pattern": "white", "position": [28, 28]}\' (with --target)')
    ex.add_argument('--target', type=int, help='target class (overrides the preset\'s)')
    ex.add_argument('--config', default=None,
                    help=f'config giving model.backbone, model.mean/std, the data root and the '
                    f'probe settings (default: {DEFAULT_CONFIG})')
    ex.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='override config keys, e.g. model.backbone.base_channels=16')
    ex.add_argument('--probe', help='linear head on raw pooled features (weight/bias or fc.*); '
                    'trained on cached features when omitted')
    ex.add_argument('--data-root', help='folder holding cifar-10-batches-py/ (default: the '
                    'config\'s, else $BMAIU_DATA_ROOT or data/cifar10)')
    ex.add_argument('--data-path', default='./data/cifar10',
                    help='the record\'s data_path: where BackdoorBench finds CIFAR-10')
    ex.add_argument('--probe-train-size', type=int,
                    help='train the probe on the first N training images (default: the '
                    'config\'s probe split size, else all)')
    ex.add_argument('--probe-features', choices=['l2', 'standardize'], default='l2',
                    help='trained probe: on L2-normalized features without bias (the '
                    'plugin\'s probe, same decisions on raw features) or on standardized '
                    'features with bias folded into fc')
    ex.add_argument('--num-test', type=int, help='export only the first N test images')
    ex.add_argument('--seed', type=int, default=0, help='seed of random trigger positions')
    ex.add_argument('--batch-size', type=int, default=256)
    ex.add_argument('--device', default=None, help='cpu or cuda (default: cuda if available)')
    ex.add_argument('--force', action='store_true', help='replace an existing record')

    ve = sub.add_parser('verify', help='load a record the way BackdoorBench does (its model '
                        'factory, positional keys, strict load, its transform) and score it')
    ve.add_argument('record', help='attack_result.pt or its record/NAME folder')
    ve.add_argument('--root', help='folder holding record/ (default: inferred from the path)')
    ve.add_argument('--data-root', help='folder holding cifar-10-batches-py/, for BA (default: '
                    'the record\'s data_path under the root)')
    ve.add_argument('--batch-size', type=int, default=256)

    im = sub.add_parser('import', help='attack record -> classifier, BA / ASR / PA')
    im.add_argument('record', help='attack_result.pt or its record/NAME folder')
    im.add_argument('--root', help='folder holding record/ (default: inferred from the path)')
    im.add_argument('--config', default=None,
                    help='take the backbone from this config instead of the record')
    im.add_argument('--cfg-options', nargs='+', action=DictAction,
                    help='override config keys')
    im.add_argument('--data-root', help='folder holding cifar-10-batches-py/, for BA '
                    '(default: the record\'s data_path)')
    im.add_argument('--out', help='save the encoder (backbone.* + head.fc.*) for this plugin\'s '
                    'tools, re-expressed for the plugin\'s CIFAR-10 normalization')
    im.add_argument('--metrics-out', help='write the metrics as JSON here')
    im.add_argument('--no-eval', action='store_true', help='load and check only')
    im.add_argument('--batch-size', type=int, default=256)
    im.add_argument('--device', default=None, help='cpu or cuda (default: cuda if available)')
    im.add_argument('--force', action='store_true', help='replace existing output files')
    return parser.parse_args(argv)


def _load_config(path, options):
    from bmaiu_plugin.utils.errors import ConfigValueError
    path = path or osp.join(REPO_ROOT, DEFAULT_CONFIG)
    if not osp.isfile(path) and osp.isfile(osp.join(REPO_ROOT, path)):
        path = osp.join(REPO_ROOT, path)
    if not osp.isfile(path):
        raise ConfigValueError(f'config not found: {path}')
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    if not isinstance(cfg.get('model'), dict) or 'backbone' not in cfg.model:
        raise ConfigValueError(f'{path} has no model.backbone')
    return cfg


def _config_options(cfg) -> dict:
    """Backbone, normalization, data and probe settings of a plugin config."""
    from bmaiu_plugin.interop.backdoorbench import CIFAR10_MEAN, CIFAR10_STD
    model = cfg.model
    dp = model.get('data_preprocessor') or {}
    mean = model.get('mean') or dp.get('mean') or CIFAR10_MEAN
    std = model.get('std') or dp.get('std') or CIFAR10_STD
    test_ds = ((cfg.get('test_dataloader') or {}).get('dataset') or {})
    probe_ds = (((cfg.get('test_cfg') or {}).get('probe_dataloader') or {}).get('dataset') or {})
    ev = cfg.get('test_evaluator') or {}
    ev = ev if isinstance(ev, dict) and ev.get('type') == 'BackdoorProbeMetric' else {}
    probe_cfg = {k: ev[k] for k in ('epochs', 'batch_size', 'lr', 'momentum', 'weight_decay',
                                    'seed') if k in ev}
    size = probe_ds.get('indices')
    return dict(backbone=model.backbone.to_dict() if hasattr(model.backbone, 'to_dict')
                else dict(model.backbone),
                mean=list(mean), std=list(std), data_root=test_ds.get('data_root'),
                check_md5=bool(test_ds.get('check_md5', False)), probe_cfg=probe_cfg,
                probe_train_size=size if isinstance(size, int) else None)


def _device(name):
    import torch
    return name or ('cuda' if torch.cuda.is_available() else 'cpu')


def _export(args):
    from bmaiu_plugin.interop.backdoorbench import export_attack_record
    from bmaiu_plugin.utils.errors import CheckpointError, ConfigValueError
    if not osp.isfile(args.encoder):
        raise CheckpointError(f'encoder checkpoint not found: {args.encoder}')
    trigger = None
    if args.trigger is not None:
        try:
            trigger = json.loads(args.trigger)
        except json.JSONDecodeError as e:
            raise ConfigValueError(f'--trigger is not valid JSON ({e})') from None
    opts = _config_options(_load_config(args.config, args.cfg_options))
    train_size = args.probe_train_size if args.probe_train_size is not None \
        else opts['probe_train_size']
    name = args.name or args.trigger_name or args.attack or 'custom'
    summary = export_attack_record(
        args.encoder, args.out_root, name, backbone=opts['backbone'], mean=opts['mean'],
        std=opts['std'], attack=args.attack, trigger_name=args.trigger_name, trigger=trigger,
        target=args.target, probe=args.probe, data_root=args.data_root or opts['data_root'],
        check_md5=opts['check_md5'], data_path=args.data_path, probe_train_size=train_size,
        num_test=args.num_test, probe_cfg=opts['probe_cfg'],
        probe_features=args.probe_features, seed=args.seed,
        batch_size=args.batch_size, device=_device(args.device), force=args.force)
    m = summary['metrics']
    print(f'wrote {summary["record"]}: {summary["num_poisoned"]} triggered of '
          f'{summary["num_test"]} test images (trigger {summary["trigger"]}, target '
          f'{summary["target"]}); BA {m["BA"]:.2f}  ASR {m["ASR"]:.2f}  PA {m["PA"]:.2f}',
          flush=True)
    return summary


def _import(args):
    from bmaiu_plugin.interop.backdoorbench import import_attack_record, write_encoder
    from bmaiu_plugin.utils.errors import ConfigValueError
    backbone, mean_std = None, {}
    if args.config is not None:
        opts = _config_options(_load_config(args.config, args.cfg_options))
        backbone, mean_std = opts['backbone'], dict(mean=opts['mean'], std=opts['std'])
    for out in (args.out, args.metrics_out):
        if out and osp.exists(out) and not args.force:
            raise ConfigValueError(f'{out} exists; pass --force to replace it')
    imported = import_attack_record(args.record, root=args.root, backbone=backbone,
                                    data_root=args.data_root, evaluate=not args.no_eval,
                                    batch_size=args.batch_size, device=_device(args.device))
    rec = imported.record
    print(f'loaded {imported.path}: {rec["model_name"]} ({imported.backbone_cfg["type"]}), '
          f'{rec["num_classes"]} classes, clean data {rec["clean_data"]}', flush=True)
    if imported.metrics:
        print(' '.join(f'{k} {v:.2f}' if isinstance(v, float) else f'{k} {v}'
                       for k, v in imported.metrics.items()), flush=True)
    for note in imported.notes:
        print(f'note: {note}', flush=True)
    if args.metrics_out:
        with open(args.metrics_out, 'w') as f:
            json.dump(dict(record=imported.path, metrics=imported.metrics, notes=imported.notes),
                      f, indent=2)
    if args.out:
        write_encoder(imported, args.out, force=args.force, **mean_std)
        print(f'wrote encoder {args.out} (use --cfg-options encoder_checkpoint={args.out})',
              flush=True)
    return imported


def _verify(args):
    from bmaiu_plugin.interop.backdoorbench import (RECORD_FILE, _default_root, load_record,
                                                    record_clean_test)
    from bmaiu_plugin.interop.bb_procedure import bb_evaluate
    path = osp.join(args.record, RECORD_FILE) if osp.isdir(args.record) else args.record
    record = load_record(path)
    root = args.root or _default_root(path)
    clean, note = record_clean_test(record, root, args.data_root)
    res = bb_evaluate(path, root=root, clean_test=clean, batch_size=args.batch_size)
    exported = (record.get('bmaiu') or {}).get('metrics') or {}
    print(f'{record["model_name"]}: built, {len(record["model"])} entries renamed by position, '
          'strict load ok', flush=True)
    line = '  '.join(f'{k} {res[k]:.2f}' for k in ('BA', 'ASR', 'PA') if k in res)
    print(f'BackdoorBench procedure: {line} on {res["num_bd_test"]} triggered images',
          flush=True)
    if exported:
        print('at export:              ' + '  '.join(
            f'{k} {exported[k]:.2f}' for k in ('BA', 'ASR', 'PA') if k in exported), flush=True)
    if note:
        print(f'note: {note}', flush=True)
    return res


def main(argv=None):
    args = parse_args(argv)
    from bmaiu_plugin.apis import run_cli
    run = dict(export=_export, verify=_verify, **{'import': _import})[args.command]
    return run_cli(lambda: run(args))


if __name__ == '__main__':
    sys.exit(main())
